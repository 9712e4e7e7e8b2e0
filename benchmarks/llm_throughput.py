"""Tokens per second of a local LLM runtime: called directly, and through the gateway's POST /run.

Both paths use one engine instance in one process (the app's own, from its engine registry), the
same model, prompt, max_tokens and greedy sampling, after one warm-up request that loads the
model, in alternating rounds (``--rounds``) of ``--requests`` requests, ``--concurrency`` at
once. The gateway path adds what a paid job costs: authentication, schema validation, the
credit hold, the job row, dispatch through the router, the capture and the response.

    .venv/bin/python benchmarks/llm_throughput.py --backend transformers-llm --model tiny
    .venv-vllm/bin/python benchmarks/llm_throughput.py --backend vllm --model tiny \\
        --options '{"max_model_len": 256, "enforce_eager": true}'

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "bench@example.com"


@dataclass
class Measured:
    path: str
    tokens: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        ms = [s * 1000 for s in self.latencies_s] or [float("nan")]
        return (
            f"{self.path:<9} requests={len(self.latencies_s):<4} tokens={self.tokens:<6} "
            f"seconds={self.seconds:8.3f}  tokens/s={self.tokens_per_s:9.1f}  "
            f"latency p50={statistics.median(ms):7.1f} ms mean={statistics.fmean(ms):7.1f} ms "
            f"max={max(ms):7.1f} ms"
        )


async def measure(path: str, requests: int, concurrency: int, call: Any) -> Measured:
    """Run ``call()`` (returning completion tokens) ``requests`` times, ``concurrency`` at once."""
    result = Measured(path)
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            started = time.perf_counter()
            tokens = await call()
            result.latencies_s.append(time.perf_counter() - started)
            result.tokens += tokens

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    result.seconds = time.perf_counter() - started
    return result


async def bench(args: argparse.Namespace, model: str, work: Path) -> None:
    from gpubridge.db import Database
    from gpubridge.engines.base import BackendConfig, EngineRequest, ModelRef, discard_events
    from tests.support.gateway_app import (
        auth,
        register,
        running_app,
        settings_for,
        write_catalog,
    )

    backend = {
        "name": "bench",
        "type": args.backend,
        "concurrency": args.concurrency,
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
    settings = settings_for(url, work, catalog, job_timeout_s=3600)
    inputs = {"prompt": args.prompt, "max_tokens": args.max_tokens, "temperature": 0}
    async with running_app(settings) as (app, client):
        engine = app.state.components.registry.get(BackendConfig(**backend))
        ref = ModelRef("llama-3.3-70b-versatile", model)
        key = await register(client, EMAIL)
        await app.state.gateway.grant(EMAIL, 1_000_000_000)

        async def direct() -> int:
            request = EngineRequest("bench", "llm-4090", ref, dict(inputs))
            result = await engine.run(request, discard_events)
            return int(result.usage.completion_tokens)

        async def gateway() -> int:
            body = {"service": "llm-4090", "input": inputs}
            response = await client.post("/run", json=body, headers=auth(key), timeout=3600)
            job = response.json()
            if response.status_code != 200 or job.get("status") != "completed":
                raise RuntimeError(f"POST /run: {response.status_code} {response.text[:300]}")
            return int(job["usage"]["completion_tokens"])

        started = time.perf_counter()
        await direct()  # loads the model
        print(f"load + first request: {time.perf_counter() - started:.1f} s")
        await gateway()
        runs = [Measured("direct"), Measured("gateway")]
        for _ in range(args.rounds):  # alternating, so drift on a shared machine hits both
            for total, call in zip(runs, (direct, gateway), strict=True):
                run = await measure(total.path, args.requests, args.concurrency, call)
                total.tokens += run.tokens
                total.seconds += run.seconds
                total.latencies_s += run.latencies_s
        print(
            f"backend={args.backend} model={model} prompt={args.prompt!r} "
            f"max_tokens={args.max_tokens} requests={args.requests} x {args.rounds} rounds "
            f"concurrency={args.concurrency}"
        )
        for run in runs:
            print(run.line())
        ratio = runs[1].tokens_per_s / runs[0].tokens_per_s if runs[0].tokens_per_s else 0.0
        print(f"gateway/direct tokens/s: {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["transformers-llm", "vllm"], required=True)
    parser.add_argument("--model", required=True, help="a model directory, a hub id, or 'tiny'")
    parser.add_argument("--options", default="{}", help="backend options as JSON")
    parser.add_argument("--prompt", default="Tell me about the quick brown fox.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=1)
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
