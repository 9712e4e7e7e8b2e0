"""Money integrity under load: thousands of paid requests with failover, cancels and repeats,
then the ledger must still prove itself.

``gpubridge serve`` runs as a subprocess on loopback with a fresh database (SQLite or a
PostgreSQL database of its own, dropped afterwards). ``llm-4090`` is served by two loopback
OpenAI-compatible upstreams and ``embedding-l4`` (made async) by two slower ones;
every upstream fails every third request (a 500, then a dropped connection, in turn), so jobs
fail over to the second backend and some fail on both and are refunded. Several accounts get
credits (one only a little, so it runs dry under load and is refused). An httpx client sends
``--requests`` paid ``POST /run`` at ``--concurrency`` over real HTTP: sync jobs, async jobs
cancelled with ``POST /cancel/{id}`` after a short random wait, and repeats with the same
Idempotency-Key (one after the other and at the same moment), which must return the same job
and charge once. At the end it runs the ledger check the CLI runs, checks independently that
balances add up to what was granted minus what was captured and that no job was charged twice,
and prints the figures. The exit status is 1 when any check fails or an answer was unexpected.

    .venv/bin/python benchmarks/ledger_load.py [--database sqlite|postgresql] [--requests 2000]
        [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpubridge.catalog.loader import packaged_catalog_text  # noqa: E402
from gpubridge.money import micros_to_usd  # noqa: E402
from tests.support.openai_upstream import UpstreamBehaviour, serve_openai_upstream  # noqa: E402

GPUBRIDGE = [sys.executable, "-m", "gpubridge"]
"""The CLI of this checkout (with ROOT first on PYTHONPATH), not whatever the environment's
``gpubridge`` script was installed from."""
PG_ADMIN_DSN = os.environ.get("GPUBRIDGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SYNC, ASYNC = "llm-4090", "embedding-l4"
"""The async service: embeddings made async (the OpenAI backend serves only these two)."""
FUNDED_MICROS = 20_000_000
LEAN_MICROS = 400_000
"""The lean account's credits: about a hundred jobs, well short of its share of the load."""
LONG_PROMPT = " ".join(["word"] * 6000)
"""Metered above the minimum charge, so captures differ from holds and from each other."""
SHAPES = [
    {"prompt": "Hello world", "max_tokens": 16},
    {"prompt": "Tell me a story", "max_tokens": 8192},
    {"prompt": LONG_PROMPT, "max_tokens": 64},
]
REQUEST_TIMEOUT_S = 60.0
SLOW_S = 0.5
"""How long the async service's upstreams take; cancels come 0 to twice this after the 202."""


# -- set-up ----------------------------------------------------------------------------------
def write_catalog(path: Path, fast: list[str], slow: list[str], concurrency: int) -> None:
    """The packaged catalog: llm-4090 on the two fast upstreams, embedding-l4 made async on the
    two slow ones; no other service has a backend."""
    data = yaml.safe_load(packaged_catalog_text())
    services = data["services"]
    for service in services.values():
        service["backends"] = []

    def backends(prefix: str, urls: list[str]) -> list[dict[str, Any]]:
        return [
            {
                "name": f"{prefix}-{i}",
                "type": "openai",
                "concurrency": concurrency,
                "options": {"base_url": url, "model": "bench-model", "timeout_s": 30},
            }
            for i, url in enumerate(urls, 1)
        ]

    services[ASYNC]["mode"] = "async"
    services[SYNC]["backends"] = backends("fast", fast)
    services[ASYNC]["backends"] = backends("slow", slow)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


async def admin_sql(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_ready(client: httpx.AsyncClient, server: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.returncode is not None:
            raise RuntimeError(f"gpubridge serve exited with {server.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/healthz", timeout=1)).status_code == 200:
                return
        await asyncio.sleep(0.05)
    raise RuntimeError("gpubridge serve did not answer /healthz within 60 s")


@dataclass
class Account:
    email: str
    key: str
    granted_micros: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def open_accounts(client: httpx.AsyncClient, count: int) -> list[Account]:
    """Register ``count`` accounts, grant credits as the operator does (``gpubridge credits
    grant``'s use case, in this process), and lift the daily limits out of the way."""
    from gpubridge.app import build_components
    from gpubridge.settings import Settings

    opened = []
    for i in range(count):
        email = f"load-{i}@example.com"
        answer = await client.post("/account/register", json={"email": email})
        if answer.status_code != 201:
            raise RuntimeError(f"register: HTTP {answer.status_code}: {answer.text}")
        account = Account(email, answer.json()["api_key"], LEAN_MICROS if i == 0 else FUNDED_MICROS)
        limit = await client.post(
            "/account/spending-limit", json={"daily_limit": 10_000}, headers=account.headers
        )
        if limit.status_code != 200:
            raise RuntimeError(f"spending limit: HTTP {limit.status_code}: {limit.text}")
        opened.append(account)
    components = build_components(Settings(auto_migrate=False))
    try:
        for account in opened:
            await components.gateway.grant(account.email, account.granted_micros, "load run")
    finally:
        await components.close()
    return opened


# -- load ------------------------------------------------------------------------------------
@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    paid_requests: int = 0
    job_ids: set[str] = field(default_factory=set)
    repeats: Counter[str] = field(default_factory=Counter)
    cancels: Counter[str] = field(default_factory=Counter)
    lean_refused: int = 0


class Load:
    def __init__(self, client: httpx.AsyncClient, concurrency: int, tally: Tally) -> None:
        self.client = client
        self.slots = asyncio.Semaphore(concurrency)
        self.tally = tally

    async def call(
        self, what: str, path: str, account: Account, body: Any = None, key: str | None = None
    ) -> httpx.Response | None:
        """One request within the concurrency bound; None when it got no answer."""
        headers = dict(account.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        if what == "run":
            self.tally.paid_requests += 1
        async with self.slots:
            try:
                answer = await self.client.post(path, json=body, headers=headers)
            except httpx.HTTPError as exc:
                self.tally.statuses[f"{what} no answer"] += 1
                self.tally.unexpected[f"{what}: {type(exc).__name__}: {exc}"[:160]] += 1
                return None
        self.tally.statuses[f"POST /{what} {answer.status_code}"] += 1
        return answer

    def job_of(self, answer: httpx.Response | None, expected: tuple[int, ...]) -> str | None:
        """The job an answer names, when its status is one of ``expected``."""
        if answer is None:
            return None
        if answer.status_code not in expected:
            try:
                code = (answer.json().get("error") or {}).get("code", "?")
            except ValueError:
                code = answer.text[:80]
            self.tally.unexpected[f"HTTP {answer.status_code} {code}"] += 1
            return None
        if answer.status_code not in (200, 202):
            return None
        job_id: str = answer.json()["job_id"]
        self.tally.job_ids.add(job_id)
        return job_id

    async def sync_job(self, account: Account, body: dict[str, Any], lean: bool) -> None:
        answer = await self.call("run", "/run", account, body)
        if answer is not None and lean and answer.status_code == 402:
            self.tally.lean_refused += 1
            return
        job_id = self.job_of(answer, (200,))
        if job_id is not None and answer is not None:
            status = answer.json()["status"]
            if status not in ("completed", "failed"):
                self.tally.unexpected[f"sync job answered while {status}"] += 1

    async def repeat(
        self, account: Account, body: dict[str, Any], at_once: bool, reuse: bool
    ) -> None:
        """The same request twice with one Idempotency-Key: one job, one charge. With
        ``reuse``, the key once more with another body, which must be refused."""
        key = str(uuid.uuid4())
        if at_once:
            first, second = await asyncio.gather(
                self.call("run", "/run", account, body, key),
                self.call("run", "/run", account, body, key),
            )
        else:
            first = await self.call("run", "/run", account, body, key)
            second = await self.call("run", "/run", account, body, key)
        jobs = [self.job_of(first, (200,)), self.job_of(second, (200,))]
        kind = "at once" if at_once else "in turn"
        if jobs[0] is not None and jobs[0] == jobs[1]:
            self.tally.repeats[f"same job ({kind})"] += 1
        else:
            self.tally.repeats[f"DIFFERENT or no job ({kind})"] += 1
        if reuse:
            other = {**body, "input": {**body["input"], "max_tokens": 7}}
            refused = await self.call("run", "/run", account, other, key)
            self.job_of(refused, (409,))
            if refused is not None and refused.status_code == 409:
                self.tally.repeats["key reused with another body: refused"] += 1

    async def cancelled(self, account: Account, body: dict[str, Any], wait_s: float) -> None:
        job_id = self.job_of(await self.call("run", "/run", account, body), (202,))
        if job_id is None:
            return
        await asyncio.sleep(wait_s)
        answer = await self.call("cancel", f"/cancel/{job_id}", account)
        if answer is None:
            return
        if answer.status_code == 200 and answer.json()["status"] == "cancelled":
            self.tally.cancels["cancelled"] += 1
        elif answer.status_code == 409:
            self.tally.cancels["too late (job had ended)"] += 1
        else:
            self.tally.cancels[f"HTTP {answer.status_code}"] += 1
            self.tally.unexpected[f"cancel answered HTTP {answer.status_code}"] += 1


def plan(load: Load, accounts: list[Account], requests: int, rng: random.Random) -> list[Any]:
    """Operations, seeded, until they hold ``requests`` paid requests."""
    funded = accounts[1:]
    ops: list[Any] = []
    paid = 0
    while paid < requests:
        body = {"service": SYNC, "input": dict(rng.choice(SHAPES))}
        roll = rng.random()
        if roll < 0.07:
            body = {"service": ASYNC, "input": {"text": f"document {len(ops)}"}}
            ops.append(load.cancelled(rng.choice(funded), body, rng.uniform(0.0, 2 * SLOW_S)))
            paid += 1
        elif roll < 0.14:
            reuse = rng.random() < 0.25
            ops.append(load.repeat(rng.choice(funded), body, roll < 0.105, reuse))
            paid += 3 if reuse else 2
        else:
            account = rng.choice(accounts)
            ops.append(load.sync_job(account, body, account is accounts[0]))
            paid += 1
    return ops


async def drain(ops: list[Any], workers: int) -> None:
    """Run ``ops`` in order on ``workers`` workers, so that an operation's later requests (the
    cancel, the repeat) wait behind at most that many others, not behind the whole plan."""
    queue = iter(ops)

    async def worker() -> None:
        for op in queue:
            await op

    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(worker())


# -- figures ---------------------------------------------------------------------------------
async def settle_and_measure(accounts: list[Account], tally: Tally) -> tuple[dict[str, Any], Any]:
    """Wait for every job to end, run the CLI's ledger check, and read the figures."""
    from sqlalchemy import func, select

    from gpubridge.app import build_components, prepare_database
    from gpubridge.db.tables import accounts as accounts_table
    from gpubridge.db.tables import jobs, ledger_entries
    from gpubridge.settings import Settings

    e = ledger_entries
    components = build_components(Settings())
    try:
        await prepare_database(components)
        deadline = time.monotonic() + 60
        while True:
            async with components.db.connect() as conn:
                active = await conn.scalar(
                    select(func.count())
                    .select_from(jobs)
                    .where(jobs.c.status.in_(("pending", "running")))
                )
            if not active or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        report = await components.gateway.check_ledger()
        async with components.db.connect() as conn:

            async def total(column: Any, *where: Any) -> int:
                query = select(func.coalesce(func.sum(column), 0)).where(*where)
                return int(await conn.scalar(query) or 0)

            async def count(*where: Any) -> int:
                query = select(func.count()).select_from(e).where(*where)
                return int(await conn.scalar(query) or 0)

            async def pairs(query: Any) -> dict[Any, Any]:
                return {key: value for key, value in await conn.execute(query)}

            customer = e.c.account_id.is_not(None)
            by_status = await pairs(select(jobs.c.status, func.count()).group_by(jobs.c.status))
            twice = (
                await conn.execute(
                    select(e.c.job_id, func.count().label("settlements"))
                    .where(customer, e.c.kind.in_(("capture", "refund")))
                    .group_by(e.c.job_id)
                    .having(func.count() > 1)
                )
            ).all()
            job_ids = set((await conn.execute(select(jobs.c.id))).scalars().all())
            per_account = await pairs(
                select(accounts_table.c.email, accounts_table.c.balance_micros)
            )
            captured_by = await pairs(
                select(accounts_table.c.email, func.sum(-e.c.held_delta))
                .join(e, e.c.account_id == accounts_table.c.id)
                .where(e.c.kind == "capture")
                .group_by(accounts_table.c.email)
            )
            figures = {
                "by_status": by_status,
                "captured": await total(-e.c.held_delta, customer, e.c.kind == "capture"),
                "captures": await count(customer, e.c.kind == "capture"),
                "revenue": await total(e.c.available_delta, e.c.house == "revenue"),
                "completed_cost": await total(jobs.c.cost_micros, jobs.c.status == "completed"),
                "refunded": await total(-e.c.held_delta, customer, e.c.kind == "refund"),
                "refunds": await count(customer, e.c.kind == "refund"),
                "released": await total(-e.c.held_delta, customer, e.c.kind == "release"),
                "entries": await count(),
                "granted_ledger": await total(e.c.available_delta, customer, e.c.kind == "grant"),
                "still_held": await total(e.c.held_delta, customer),
                "balances": await total(accounts_table.c.balance_micros),
                "lowest_balance": min(per_account.values()),
                "charged_twice": [tuple(r) for r in twice],
                "jobs_unseen": len(job_ids - tally.job_ids),
                "jobs_missing": len(tally.job_ids - job_ids),
                "account_mismatch": [
                    (a.email, per_account[a.email], a.granted_micros - captured_by.get(a.email, 0))
                    for a in accounts
                    if per_account[a.email] != a.granted_micros - int(captured_by.get(a.email, 0))
                ],
                "active_left": active,
            }
    finally:
        await components.close()
    return figures, report


def usd(micros: int) -> str:
    return f"${micros_to_usd(micros):,.6f} ({micros:,} micro-USD)"


def report_figures(
    args: argparse.Namespace,
    tally: Tally,
    figures: dict[str, Any],
    report: Any,
    accounts: list[Account],
    wall_s: float,
    upstreams: dict[str, UpstreamBehaviour],
) -> list[str]:
    """Print the figures; the checks that failed."""
    granted = sum(a.granted_micros for a in accounts)
    http_total = tally.statuses.total()
    print(f"\nledger load: {args.database}, concurrency {args.concurrency}, transport: real HTTP")
    print("  (httpx.AsyncClient -> `gpubridge serve` (uvicorn) on 127.0.0.1)")
    print(f"accounts: {len(accounts)} (one lean: {usd(LEAN_MICROS)}); granted {usd(granted)}")
    print(f"paid requests (POST /run): {tally.paid_requests}; all requests: {http_total}")
    print(f"wall time: {wall_s:.2f} s; {http_total / wall_s:.0f} requests/s")
    print("requests by HTTP status:")
    for name, count in sorted(tally.statuses.items()):
        print(f"  {name:<24}{count:>7}")
    print(f"  lean account refused (402): {tally.lean_refused}")
    print("jobs by final status:")
    for name, count in sorted(figures["by_status"].items()):
        print(f"  {name:<24}{count:>7}")
    print(f"  total jobs              {sum(figures['by_status'].values()):>7}")
    print("upstream calls (failed on purpose: every third):")
    for name, b in upstreams.items():
        print(f"  {name:<24}{b.posts:>7} calls, {b.failed} failed")
    print(f"captured (revenue): {usd(figures['captured'])} in {figures['captures']} captures")
    print(f"  revenue house account: {usd(figures['revenue'])}")
    print(f"  cost of completed jobs: {usd(figures['completed_cost'])}")
    print(f"refunded: {usd(figures['refunded'])} in {figures['refunds']} refunds")
    print(f"released (hold above cost): {usd(figures['released'])}")
    print(f"ledger entries: {figures['entries']}")
    print(f"still held: {usd(figures['still_held'])}; jobs still active: {figures['active_left']}")
    print(f"account balances total: {usd(figures['balances'])}")
    print(f"granted - captured:     {usd(granted - figures['captured'])}")
    print(f"lowest account balance: {usd(figures['lowest_balance'])}")
    print("idempotent repeats:")
    for name, count in sorted(tally.repeats.items()):
        print(f"  {name:<40}{count:>5}")
    print("cancels:")
    for name, count in sorted(tally.cancels.items()):
        print(f"  {name:<40}{count:>5}")
    print(f"ledger check: {report.summary()}")

    checks = {
        "ledger check": report.ok,
        "balances == granted - captured": figures["balances"] == granted - figures["captured"],
        "each account: balance == its grant - its captures": not figures["account_mismatch"],
        "grants in the ledger == grants made": figures["granted_ledger"] == granted,
        "revenue == captured == cost of completed jobs": (
            figures["revenue"] == figures["captured"] == figures["completed_cost"]
        ),
        "no job charged twice (one capture or refund each)": not figures["charged_twice"],
        "nothing held, no job active": figures["still_held"] == 0 and not figures["active_left"],
        "no balance below zero": figures["lowest_balance"] >= 0,
        "every job was answered to a client, and every answered job exists": (
            figures["jobs_unseen"] == 0 and figures["jobs_missing"] == 0
        ),
        "every idempotent repeat returned the same job": not any(
            k.startswith("DIFFERENT") for k in tally.repeats
        ),
        "no unexpected answer": not tally.unexpected,
    }
    print("independent checks:")
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    if figures["charged_twice"]:
        print(f"  jobs charged twice: {figures['charged_twice'][:20]}")
    if figures["account_mismatch"]:
        print(f"  (email, balance, grant - captures): {figures['account_mismatch']}")
    if figures["jobs_unseen"] or figures["jobs_missing"]:
        print(
            f"  jobs in the database no client saw: {figures['jobs_unseen']}; "
            f"jobs clients saw that are not there: {figures['jobs_missing']}"
        )
    for reason, count in tally.unexpected.most_common(10):
        print(f"  unexpected: {count} x {reason}")
    return [name for name, ok in checks.items() if not ok]


# -- the run ---------------------------------------------------------------------------------
async def run(args: argparse.Namespace, tmp: Path) -> int:
    behaviours = {
        name: UpstreamBehaviour(
            model="bench-model",
            record=False,
            fail_every=args.fail_every,
            fail_every_how=(500, "drop"),
            delay_s=SLOW_S if name.startswith("slow") else 0.0,
        )
        for name in ("fast-1", "fast-2", "slow-1", "slow-2")
    }
    database = None
    if args.database == "postgresql":
        database = f"gpubridge_ledger_load_{uuid.uuid4().hex[:10]}"
        await admin_sql(f'CREATE DATABASE "{database}"')
        base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        os.environ["GPUBRIDGE_DATABASE_URL"] = f"{base}/{database}"
    else:
        os.environ.pop("GPUBRIDGE_DATABASE_URL", None)
    server: asyncio.subprocess.Process | None = None
    log = tmp / "gateway.log"
    failed: list[str] = ["did not finish"]
    try:
        with contextlib.ExitStack() as stack:
            urls = {
                name: stack.enter_context(serve_openai_upstream(behaviour)).base_url
                for name, behaviour in behaviours.items()
            }
            catalog = tmp / "catalog.yaml"
            write_catalog(
                catalog,
                [urls["fast-1"], urls["fast-2"]],
                [urls["slow-1"], urls["slow-2"]],
                args.concurrency * 2,
            )
            port = free_port()
            os.environ.update(
                {
                    "PYTHONPATH": os.pathsep.join(
                        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
                    ),
                    "GPUBRIDGE_DATA_DIR": str(tmp / "data"),
                    "GPUBRIDGE_CATALOG": str(catalog),
                    "GPUBRIDGE_DISPATCHER_POLL_S": "0.05",
                    # Money is under test here, not the limits: a few keys send thousands.
                    "GPUBRIDGE_RATE_LIMIT_PER_KEY_PER_MINUTE": "0",
                    "GPUBRIDGE_RATE_LIMIT_PER_IP_PER_SECOND": "0",
                }
            )
            with log.open("wb") as out:
                server = await asyncio.create_subprocess_exec(
                    *GPUBRIDGE,
                    "serve",
                    "--port",
                    str(port),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            limits = httpx.Limits(
                max_connections=args.concurrency, max_keepalive_connections=args.concurrency
            )
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=REQUEST_TIMEOUT_S
            ) as client:
                await wait_ready(client, server)
                accounts = await open_accounts(client, args.accounts)
                tally = Tally()
                load = Load(client, args.concurrency, tally)
                ops = plan(load, accounts, args.requests, random.Random(args.seed))
                print(f"sending {args.requests}+ paid requests ...", file=sys.stderr)
                started = time.perf_counter()
                await drain(ops, args.concurrency)
                wall_s = time.perf_counter() - started
            figures, report = await settle_and_measure(accounts, tally)
            server.send_signal(signal.SIGTERM)
            await asyncio.wait_for(server.wait(), 20)
            failed = report_figures(args, tally, figures, report, accounts, wall_s, behaviours)
            cli = await asyncio.create_subprocess_exec(
                *GPUBRIDGE,
                "ledger",
                "check",
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            said, _ = await asyncio.wait_for(cli.communicate(), 120)
            print(f"`gpubridge ledger check`: exit {cli.returncode}: {said.decode().strip()}")
            if (cli.returncode == 0) != report.ok:
                failed.append("the CLI's ledger check disagrees")
    finally:
        if server is not None and server.returncode is None:
            server.kill()
            await server.wait()
        if failed:
            print(f"\nFAILED: {'; '.join(failed)}", file=sys.stderr)
            text = log.read_text(errors="replace") if log.exists() else ""
            print(f"--- last lines of the gateway's log ---\n{text[-4000:]}", file=sys.stderr)
        if database is not None and not args.keep:
            await admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--requests", type=int, default=2000, help="paid POST /run to send")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--accounts", type=int, default=6, help="accounts (the first is lean)")
    parser.add_argument("--fail-every", type=int, default=3, help="each upstream fails every n-th")
    parser.add_argument("--seed", type=int, default=1, help="seeds the mix of requests")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and database")
    args = parser.parse_args()
    if args.accounts < 2:
        parser.error("--accounts must be at least 2")
    logging.basicConfig(level=logging.WARNING)
    # The upstreams drop connections on purpose; their servers' tracebacks are noise here.
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    tmp = Path(tempfile.mkdtemp(prefix="gpubridge-ledger-load-"))
    try:
        return asyncio.run(run(args, tmp))
    except KeyboardInterrupt:
        return 130
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
