"""What gpubridge adds to a request: the paid sync path against the same upstream called directly.

An instant OpenAI-compatible upstream runs in its own process; ``gpubridge serve`` runs as a
subprocess with an operator catalog that sends ``llm-4090`` to that upstream. An aiohttp client
drives both paths at each concurrency for a fixed time and prints latency, throughput, the
server's CPU per request, its start-up time (wall and CPU) and idle memory, next to
PERFORMANCE.md's targets. Every other service is left without a backend, so no model loads on
this machine (the starter profile keeps an operator's choices). With ``--pin`` (the default where
the machine has two cores or more) the server runs on the first core and the client and the
upstream share the second (``taskset``).

With ``--processes 1 2 4`` (PostgreSQL only) the paid path is measured again through
``gpubridge serve --processes N`` for each N above 1; those servers run on every core but the
client's (unpinned on a machine of two cores, where they share the client's core too).

    .venv/bin/python benchmarks/gateway_overhead.py [--seconds 10] [--concurrency 1 16]
        [--database sqlite|postgresql] [--processes 1 2 4] [--no-pin] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
GPUBRIDGE = Path(sys.executable).parent / "gpubridge"
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CPU, CLIENT_CPU = (CPUS[0], CPUS[1]) if len(CPUS) >= 2 else (None, None)
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
PROMPT = "Hello world"
MAX_TOKENS = 16
UPSTREAM_MODEL = "bench-model"
REQUEST_TIMEOUT_S = 30.0
EMAIL = "bench@example.com"
PG_ADMIN_DSN = os.environ.get("GPUBRIDGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TASKSET = shutil.which("taskset")

Call = Callable[[aiohttp.ClientSession], Awaitable[None]]


# -- the upstream (runs in its own process) -----------------------------------------------------
def _bare_upstream() -> Any:
    """A bare ASGI OpenAI-compatible chat upstream: the answers the Starlette one sends (one
    JSON body, or a stream with usage when ``stream`` is true), at once."""
    reply = ("Hello", ",", " world", "!")
    base = {"id": "chatcmpl-1", "created": 0, "model": UPSTREAM_MODEL}
    chunk = {**base, "object": "chat.completion.chunk"}

    def usage_of(words: tuple[str, ...], prompt_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }

    def whole(max_tokens: int, prompt_tokens: int) -> bytes:
        words = reply[:max_tokens]
        finish = "length" if len(words) < len(reply) else "stop"
        message = {"role": "assistant", "content": "".join(words)}
        completion = {
            **base,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage_of(words, prompt_tokens),
        }
        return json.dumps(completion).encode()

    def stream(max_tokens: int, prompt_tokens: int) -> bytes:
        words = reply[:max_tokens]
        finish = "length" if len(words) < len(reply) else "stop"
        usage = usage_of(words, prompt_tokens)
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}
            for w in words
        ]
        events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        events.append({**chunk, "choices": [], "usage": usage})
        lines = [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]
        return "".join(lines).encode()

    cache: dict[tuple[bool, int, int], bytes] = {}
    sse = [(b"content-type", b"text/event-stream")]
    as_json = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "POST" and scope["path"] == "/v1/chat/completions":
            body = json.loads(raw)
            words = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
            streamed = body.get("stream") is True
            key = (streamed, int(body.get("max_tokens") or len(reply)), words)
            payload = cache.get(key) or cache.setdefault(
                key, (stream if streamed else whole)(*key[1:])
            )
            headers = sse if streamed else as_json
        else:
            payload, headers = b'{"object":"list","data":[]}', as_json
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def serve_upstream(fd: int, kind: str) -> None:
    """Serve the upstream on the listening socket ``fd`` (inherited from the parent)."""
    import uvicorn

    if kind == "starlette":
        sys.path.insert(0, str(ROOT))
        from tests.support.openai_upstream import UpstreamBehaviour, build_app

        app: Any = build_app(UpstreamBehaviour(model=UPSTREAM_MODEL, record=False))
    else:
        app = _bare_upstream()
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled
        uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


# -- processes ---------------------------------------------------------------------------------
def pin(pid: int, cpu: int | None) -> bool:
    """Pin ``pid`` (0: this process) to one CPU (None: leave it where it is)."""
    if cpu is None:
        return False
    try:
        os.sched_setaffinity(pid, {cpu})
    except OSError:
        return False
    return True


class Processes:
    """Children started in their own sessions, and ended (SIGINT, then kill) on the way out."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def start(
        self, args: list[str], log: Path, cpu: int | None, **kwargs: Any
    ) -> subprocess.Popen[bytes]:
        """Start ``args``; on ``cpu`` from its first instruction (``taskset``) when given."""
        if cpu is not None and TASKSET:
            args = [TASKSET, "-c", str(cpu), *args]
        with log.open("wb") as out:
            child = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        self.children.append(child)
        if not TASKSET:
            pin(child.pid, cpu)
        return child

    def stop(self, child: subprocess.Popen[bytes]) -> None:
        """End one child now (SIGINT, then kill)."""
        child.send_signal(signal.SIGINT)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)

    def stop_all(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        for child in self.children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (the gateway processes of ``serve --processes N``)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return pids


def family_cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in family(pid):
        with contextlib.suppress(OSError, ValueError):
            total += cpu_seconds(member)
    return total


def family_rss_mb(pid: int) -> float:
    total = 0.0
    for member in family(pid):
        with contextlib.suppress(OSError):
            total += rss_mb(member)
    return total


async def cancelled_by_sigterm(work: Awaitable[None]) -> None:
    """Await ``work``; SIGTERM cancels it, so clean-up runs as it does on Ctrl-C."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await work


# -- load ---------------------------------------------------------------------------------------
@dataclass
class Run:
    path: str
    concurrency: int
    processes: int = 1
    latencies_ms: list[float] = field(default_factory=list)
    done_at_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    server_cpu_s: float | None = None

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0

    def pct(self, q: int) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]

    @property
    def drift(self) -> float:
        """Throughput in the last quarter of the run over that in the first, minus one."""
        quarter = self.elapsed_s / 4
        first = sum(1 for t in self.done_at_s if t < quarter)
        last = sum(1 for t in self.done_at_s if t >= self.elapsed_s - quarter)
        return last / first - 1 if first else float("nan")

    @property
    def cpu_ms_per_request(self) -> float | None:
        requests = len(self.latencies_ms) + self.errors.total()
        if self.server_cpu_s is None or not requests:
            return None
        return self.server_cpu_s * 1000 / requests


class Refused(Exception):
    """An answer that is not the expected success; its message groups like answers."""


async def drive(call: Call, run: Run, seconds: float) -> None:
    """``run.concurrency`` workers call back to back for ``seconds``; every answer is checked."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=run.concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        stop_at = started + seconds

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    await call(session)
                except Refused as exc:
                    run.errors[str(exc)] += 1
                    continue
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    run.errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
                    continue
                done = time.perf_counter()
                run.latencies_ms.append((done - t0) * 1000)
                run.done_at_s.append(done - started)

        async with asyncio.timeout(seconds + REQUEST_TIMEOUT_S + 5), asyncio.TaskGroup() as group:
            for _ in range(run.concurrency):
                group.create_task(worker())
        run.elapsed_s = time.perf_counter() - started


def direct_call(url: str) -> Call:
    """The same completion asked of the upstream itself, as one JSON answer."""
    body = {
        "model": UPSTREAM_MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
    }

    async def call(session: aiohttp.ClientSession) -> None:
        async with session.post(url, json=body) as response:
            answer = await response.json(content_type=None)
            if response.status != 200 or not answer.get("choices"):
                raise Refused(f"HTTP {response.status}, no completion")

    return call


def gateway_call(url: str, key: str) -> Call:
    body = {"service": "llm-4090", "input": {"prompt": PROMPT, "max_tokens": MAX_TOKENS}}
    headers = {"Authorization": f"Bearer {key}"}

    async def call(session: aiohttp.ClientSession) -> None:
        async with session.post(url, json=body, headers=headers) as response:
            answer = await response.json(content_type=None)
            if response.status != 200 or answer.get("status") != "completed":
                error = answer.get("error") or {}
                detail = error.get("code") or error.get("message") or answer.get("status")
                raise Refused(f"HTTP {response.status}, {detail}: {str(error)[:160]}")

    return call


# -- set-up -------------------------------------------------------------------------------------
def write_catalog(path: Path, upstream_url: str, concurrency: int) -> None:
    """The packaged catalog with llm-4090 served only by the upstream, and no model on this
    machine (every other service without a backend)."""
    import yaml

    from gpubridge.catalog.loader import packaged_catalog_text

    data = yaml.safe_load(packaged_catalog_text())
    for service in data["services"].values():
        service["backends"] = []
    data["services"]["llm-4090"]["backends"] = [
        {
            "name": "bench-upstream",
            "type": "openai",
            "concurrency": concurrency,
            "options": {"base_url": upstream_url, "model": UPSTREAM_MODEL, "timeout_s": 30},
        }
    ]
    path.write_text(yaml.safe_dump(data, sort_keys=False))


async def wait_ready(url: str, child: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Return once ``url`` answers 200; raise if the child exits or time runs out."""
    started = time.perf_counter()
    probe = aiohttp.ClientTimeout(total=1)
    async with aiohttp.ClientSession(timeout=probe) as session:
        while time.perf_counter() - started < timeout_s:
            if child.poll() is not None:
                raise RuntimeError(f"the process behind {url} exited with {child.returncode}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.01)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s")


async def server_env(args: argparse.Namespace, data_dir: Path, catalog: Path) -> dict[str, str]:
    """The environment of a ``gpubridge serve`` on a fresh database kept in ``data_dir``."""
    env = {
        **os.environ,
        "GPUBRIDGE_DATA_DIR": str(data_dir),
        "GPUBRIDGE_CATALOG": str(catalog),
        # The paid path itself is measured: one key sends thousands of requests a second.
        "GPUBRIDGE_RATE_LIMIT_PER_KEY_PER_MINUTE": "0",
        "GPUBRIDGE_RATE_LIMIT_PER_IP_PER_SECOND": "0",
    }
    # A server starts as installed: with the bytecode that its first start leaves behind.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("GPUBRIDGE_DATABASE_URL", None)
    if args.database == "postgresql":
        # A database of its own, created empty (dropped on the way out unless --keep).
        name = f"gpubridge_overhead_{uuid.uuid4().hex[:10]}"
        await admin_sql(f'CREATE DATABASE "{name}"')
        args.pg_databases.append(name)
        pg = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        env["GPUBRIDGE_DATABASE_URL"] = f"{pg}/{name}"
    return env


async def admin_sql(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def make_account(base: str, env: dict[str, str]) -> str:
    """Register, grant $1,000 with the CLI, raise the daily limit; the API key."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.post(f"{base}/account/register", json={"email": EMAIL}) as response:
            if response.status != 201:
                raise RuntimeError(f"register: HTTP {response.status}: {await response.text()}")
            key: str = (await response.json())["api_key"]
        grant = await asyncio.create_subprocess_exec(
            str(GPUBRIDGE),
            "credits",
            "grant",
            EMAIL,
            "1000",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(grant.communicate(), 60)
        finally:
            if grant.returncode is None:
                grant.kill()
                await grant.wait()
        if grant.returncode != 0:
            raise RuntimeError(f"credits grant failed: {out.decode()[-2000:]}")
        limit = {"daily_limit": 10000}
        headers = {"Authorization": f"Bearer {key}"}
        url = f"{base}/account/spending-limit"
        async with session.post(url, json=limit, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"spending limit: HTTP {response.status}")
    return key


# -- the benchmark ------------------------------------------------------------------------------
@dataclass
class Facts:
    runs: list[Run] = field(default_factory=list)
    start_to_healthz_s: float = 0.0
    cold_starts_s: list[float] = field(default_factory=list)
    cold_start_cpu_s: list[float] = field(default_factory=list)
    processes_rss_mb: dict[int, float] = field(default_factory=dict)
    idle_rss_mb: float = 0.0
    loaded_rss_mb: float = 0.0


async def bench(args: argparse.Namespace, tmp: Path, procs: Processes, facts: Facts) -> None:
    server_cpu, client_cpu = args.cpus
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    upstream_url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    fd = listener.fileno()
    command = [sys.executable, __file__, "--serve-upstream", str(fd), "--upstream", args.upstream]
    with listener:
        upstream = procs.start(command, tmp / "upstream.log", client_cpu, pass_fds=[fd])
    await wait_ready(f"{upstream_url}/models", upstream)

    catalog = tmp / "catalog.yaml"
    write_catalog(catalog, upstream_url, max(args.concurrency))
    for attempt in range(args.starts):
        # Each on a fresh database, stopped once it answers; the first also writes bytecode.
        env = await server_env(args, tmp / f"start-{attempt}", catalog)
        port = free_port()
        started = time.perf_counter()
        log = tmp / f"start-{attempt}.log"
        server = procs.start(
            [str(GPUBRIDGE), "serve", "--port", str(port)], log, server_cpu, env=env
        )
        await wait_ready(f"http://127.0.0.1:{port}/healthz", server)
        facts.cold_starts_s.append(time.perf_counter() - started)
        facts.cold_start_cpu_s.append(cpu_seconds(server.pid))
        procs.stop(server)

    env = await server_env(args, tmp / "data", catalog)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    server = procs.start(
        [str(GPUBRIDGE), "serve", "--port", str(port)], tmp / "gateway.log", server_cpu, env=env
    )
    await wait_ready(f"{base}/healthz", server)
    facts.start_to_healthz_s = time.perf_counter() - started
    await asyncio.sleep(0.5)
    facts.idle_rss_mb = rss_mb(server.pid)
    key = await make_account(base, env)

    paths = {
        "direct": direct_call(f"{upstream_url}/chat/completions"),
        "gpubridge": gateway_call(f"{base}/run", key),
    }
    for concurrency in args.concurrency:
        for name, call in paths.items():
            await measure(args, facts, server, Run(name, concurrency), call)
    facts.loaded_rss_mb = rss_mb(server.pid)
    procs.stop(server)

    for processes in sorted(set(args.processes) - {1}):
        await bench_processes(args, tmp, procs, facts, catalog, processes)


async def measure(
    args: argparse.Namespace,
    facts: Facts,
    server: subprocess.Popen[bytes],
    run: Run,
    call: Call,
) -> None:
    """A second of warm-up, then ``run`` for ``args.seconds``; the server's CPU meanwhile."""
    await drive(call, Run(run.path, run.concurrency), 1.0)
    cpu_before = family_cpu_seconds(server.pid)
    await drive(call, run, args.seconds)
    if run.path == "gpubridge":
        run.server_cpu_s = family_cpu_seconds(server.pid) - cpu_before
    facts.runs.append(run)
    label = f"{run.path} c={run.concurrency} processes={run.processes}"
    print(f"  ran {label}: {len(run.latencies_ms)} ok", file=sys.stderr)
    if server.poll() is not None:
        raise RuntimeError(f"gpubridge serve exited with {server.returncode}")


async def bench_processes(
    args: argparse.Namespace,
    tmp: Path,
    procs: Processes,
    facts: Facts,
    catalog: Path,
    processes: int,
) -> None:
    """The paid path through ``gpubridge serve --processes N``, on a database of its own."""
    env = await server_env(args, tmp / f"data-{processes}", catalog)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    others = [c for c in CPUS if c != args.cpus[1]]
    cpus = ",".join(map(str, others)) if args.pin and len(CPUS) > 2 else None
    command = [str(GPUBRIDGE), "serve", "--port", str(port), "--processes", str(processes)]
    if cpus is not None and TASKSET:
        command = [TASKSET, "-c", cpus, *command]
    log = tmp / f"gateway-{processes}.log"
    server = procs.start(command, log, None, env=env)
    await wait_ready(f"{base}/healthz", server, timeout_s=120)
    deadline = time.monotonic() + 120
    while log.read_text(errors="replace").count("Application startup complete") < processes:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"serve --processes {processes} did not start all processes")
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    facts.processes_rss_mb[processes] = family_rss_mb(server.pid)
    key = await make_account(base, env)
    call = gateway_call(f"{base}/run", key)
    for concurrency in args.concurrency:
        await measure(args, facts, server, Run("gpubridge", concurrency, processes), call)
    procs.stop(server)


def report(facts: Facts, args: argparse.Namespace) -> None:
    server_cpu, client_cpu = args.cpus
    pinned = f"server CPU {server_cpu}, client + upstream CPU {client_cpu}" if args.pin else "no"
    print(
        f"\ndatabase: {args.database}; upstream: {args.upstream} ASGI on uvicorn; "
        f"pinned: {pinned}; {args.seconds:g} s per run"
    )
    head = ("path", "procs", "conc", "ok", "errors", "req/s", "drift", "p50 ms", "p99 ms")
    print("{:<10}{:>6}{:>5}{:>10}{:>8}{:>9}{:>8}{:>9}{:>9}  server CPU ms/req".format(*head))
    for r in facts.runs:
        cpu = r.cpu_ms_per_request
        procs = str(r.processes) if r.path == "gpubridge" else "-"
        print(
            f"{r.path:<10}{procs:>6}{r.concurrency:>5}{len(r.latencies_ms):>10}"
            f"{r.errors.total():>8}{r.rps:>9.0f}{r.drift:>+8.0%}{r.pct(50):>9.2f}"
            f"{r.pct(99):>9.2f}{'' if cpu is None else f'{cpu:>19.2f}'}"
        )
    by = {(r.path, r.concurrency): r for r in facts.runs if r.processes == 1}
    print()
    for (path, c), gw in by.items():
        direct = by.get(("direct", c))
        if path != "gpubridge" or direct is None:
            continue
        ratio = gw.rps / direct.rps if direct.rps else float("nan")
        print(
            f"c={c}: added latency p50 {gw.pct(50) - direct.pct(50):+.2f} ms, "
            f"p99 {gw.pct(99) - direct.pct(99):+.2f} ms; throughput gpubridge/direct "
            f"{ratio:.3f}"
        )
    gateway_runs = [r for r in facts.runs if r.path == "gpubridge" and r.processes == 1]
    cpu_total = sum(r.server_cpu_s or 0.0 for r in gateway_runs)
    requests = sum(len(r.latencies_ms) + r.errors.total() for r in gateway_runs)
    cpu_ms = cpu_total * 1000 / requests if requests else float("nan")
    cold = facts.cold_starts_s
    cold_s = statistics.median(cold) if cold else facts.start_to_healthz_s
    starts = ", ".join(f"{s:.2f}" for s in cold)
    cold_cpu = facts.cold_start_cpu_s
    cpu_starts = ", ".join(f"{s:.2f}" for s in cold_cpu)
    cold_cpu_s = statistics.median(cold_cpu) if cold_cpu else float("nan")
    print(
        f"server CPU per request (all one-process gpubridge runs): {cpu_ms:.2f} ms; start to "
        f"/healthz on a fresh database: median {cold_s:.2f} s of [{starts}] (CPU median "
        f"{cold_cpu_s:.2f} s of [{cpu_starts}]), measured server "
        f"{facts.start_to_healthz_s:.2f} s; idle RSS {facts.idle_rss_mb:.0f} MB "
        f"(after load {facts.loaded_rss_mb:.0f} MB)"
    )
    for processes, rss in sorted(facts.processes_rss_mb.items()):
        print(f"serve --processes {processes}: idle RSS of all its processes {rss:.0f} MB")
    for r in facts.runs:
        for reason, count in r.errors.most_common(3):
            print(f"errors {r.path} c={r.concurrency}: {count} x {reason}")

    def added(c: int, q: int) -> float | None:
        if ("gpubridge", c) not in by or ("direct", c) not in by:
            return None
        return by["gpubridge", c].pct(q) - by["direct", c].pct(q)

    def at(c: int, value: Callable[[Run], float]) -> float | None:
        return value(by["gpubridge", c]) if ("gpubridge", c) in by else None

    targets: list[tuple[str, float | None, float, str, bool]] = [
        ("added latency c=1 p50", added(1, 50), 2.0, "ms", True),
        ("added latency c=1 p99", added(1, 99), 5.0, "ms", True),
        ("c=16 p99", at(16, lambda r: r.pct(99)), 25.0, "ms", True),
        ("c=16 throughput", at(16, lambda r: r.rps), 1000.0, "req/s", False),
        ("CPU per request", cpu_ms if requests else None, 1.0, "ms", True),
        ("start to /healthz", cold_s, 1.0, "s", True),
        ("idle memory", facts.idle_rss_mb, 150.0, "MB", True),
    ]
    print("\ntargets (PERFORMANCE.md), gpubridge:")
    for name, measured, target, unit, at_most in targets:
        goal = f"{'<=' if at_most else '>='} {target:g} {unit}"
        if measured is None:
            print(f"  {name:<24}target {goal:<14}not measured")
            continue
        met = measured <= target if at_most else measured >= target
        shown = f"{measured:.2f} {unit}"
        print(f"  {name:<24}target {goal:<14}measured {shown:<14}{'met' if met else 'MISSED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--upstream",
        choices=["bare", "starlette"],
        default="bare",
        help="fake upstream: bare ASGI, or the tests' Starlette app",
    )
    parser.add_argument(
        "--starts",
        type=int,
        default=3,
        help="cold starts to time before the load (median shown; the first writes bytecode)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1],
        help="also measure the paid path through serve --processes N for each N above 1 "
        "(PostgreSQL only)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="a fresh SQLite file, or a fresh database on GPUBRIDGE_TEST_PG "
        "(default postgresql://postgres@127.0.0.1:5432/test)",
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=SERVER_CPU is not None,
        help="server on one core, client and upstream on another (needs two cores; the "
        "default where there are)",
    )
    parser.add_argument("--serve-upstream", type=int, metavar="FD", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream is not None:
        serve_upstream(args.serve_upstream, args.upstream)
        return 0
    if not GPUBRIDGE.exists():
        parser.error(f"{GPUBRIDGE} not found: run with the virtualenv's python")

    if any(n > 1 for n in args.processes) and args.database != "postgresql":
        parser.error("--processes above 1 needs --database postgresql")
    if any(n < 1 for n in args.processes):
        parser.error("--processes takes whole numbers of at least 1")
    if args.pin and SERVER_CPU is None:
        parser.error("--pin needs at least two cores")
    args.cpus = (SERVER_CPU, CLIENT_CPU) if args.pin else (None, None)
    args.pg_databases = []
    pin(0, args.cpus[1])
    tmp = Path(tempfile.mkdtemp(prefix="gpubridge-bench-"))
    procs = Processes()
    facts = Facts()
    failed = True
    try:
        asyncio.run(cancelled_by_sigterm(bench(args, tmp, procs, facts)))
        failed = any(r.errors for r in facts.runs)
        report(facts, args)
    except (KeyboardInterrupt, asyncio.CancelledError):
        failed = False
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if failed:
            for log in ("gateway.log", "upstream.log"):
                text = (tmp / log).read_text(errors="replace") if (tmp / log).exists() else ""
                print(f"\n--- last lines of {log} ---\n{text[-4000:]}", file=sys.stderr)
        if args.keep:
            kept = f" and databases {', '.join(args.pg_databases)}" if args.pg_databases else ""
            print(f"kept {tmp}{kept}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            for name in args.pg_databases:
                asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
