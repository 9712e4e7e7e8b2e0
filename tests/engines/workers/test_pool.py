"""Jobs in real worker processes: tiny SDXL pipelines run, are cancelled between two steps,
and survive a kill -9 of their worker."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio

from gpubridge.engines.base import BackendConfig, EngineEvent, OutputFile
from gpubridge.engines.workers.pool import WorkerPool
from gpubridge.errors import BackendError
from gpubridge.settings import WorkerSpec
from tests.engines.diffusion.conftest import tiny_sdxl_dir
from tests.support.engine_calls import Events, request

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

__all__ = ["tiny_sdxl_dir"]

SDXL = BackendConfig(
    name="local-sdxl",
    type="diffusers-text-to-image",
    options={"pipeline": "StableDiffusionXLPipeline"},
)


def txt2img(model_dir: Path, steps: int, job_id: str = "job-1") -> Any:
    job = request(
        "image-4090",
        {"prompt": "a fox", "width": 32, "height": 32, "num_inference_steps": steps},
        model=model_dir,
    )
    return type(job)(job_id, job.service, job.model, job.input, job.media)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[WorkerPool]:
    """One pool for the module: its worker loads torch and diffusers once (tests that kill it
    see it restarted)."""
    workers = WorkerPool(
        [WorkerSpec(name="worker-0", device="cpu")],
        default_budget_bytes=None,
        cancel_grace_s=1.5,
        start_timeout_s=60,
    )
    await workers.start()
    try:
        yield workers
    finally:
        await workers.close()


class StepWatch(Events):
    """Events, plus a signal at the first denoising step and the time of the last one."""

    def __init__(self) -> None:
        super().__init__()
        self.denoising = asyncio.Event()
        self.last_step_at = 0.0

    async def __call__(self, event: EngineEvent) -> None:
        await super().__call__(event)
        if event.kind == "progress" and event.data.get("stage") == "denoising":
            self.last_step_at = time.monotonic()
            self.denoising.set()


async def test_a_job_runs_in_a_worker_process_and_its_image_comes_back(
    pool: WorkerPool, tiny_sdxl_dir: Path
) -> None:
    events = Events()
    with anyio.fail_after(120):
        result = await pool.run(SDXL, txt2img(tiny_sdxl_dir, 2), events)
    (image,) = result.output["images"]
    assert isinstance(image, OutputFile) and image.data.startswith(b"\x89PNG")
    assert events.steps() == [(1, 2), (2, 2)]
    worker = pool.workers[0]
    assert worker.process is not None and worker.process.pid != os.getpid()
    assert worker.has_model(SDXL.name, str(tiny_sdxl_dir))


async def test_cancelling_a_long_job_stops_its_steps_and_frees_the_worker_within_two_seconds(
    pool: WorkerPool, tiny_sdxl_dir: Path
) -> None:
    events = StepWatch()
    starts = pool.workers[0].starts
    job = asyncio.create_task(pool.run(SDXL, txt2img(tiny_sdxl_dir, 5000), events))
    with anyio.fail_after(120):
        await events.denoising.wait()
    cancelled_at = time.monotonic()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    freed_s = time.monotonic() - cancelled_at
    assert freed_s < 2.0
    assert pool.workers[0].running == 0
    steps_seen = len(events.steps())
    assert 0 < steps_seen < 5000
    # The worker did not need a restart, and takes the next job at once.
    assert pool.workers[0].starts == starts
    with anyio.fail_after(60):
        await pool.run(SDXL, txt2img(tiny_sdxl_dir, 2, job_id="job-2"), Events())
    assert len(events.steps()) == steps_seen  # no step of the cancelled job came later


async def test_a_job_on_a_worker_killed_before_any_output_is_retried_once_on_its_restart(
    pool: WorkerPool, tiny_sdxl_dir: Path
) -> None:
    events = StepWatch()
    job = asyncio.create_task(pool.run(SDXL, txt2img(tiny_sdxl_dir, 30), events))
    with anyio.fail_after(120):
        await events.denoising.wait()
    worker = pool.workers[0]
    starts, retried = worker.starts, pool.retried_jobs
    assert worker.process is not None
    os.kill(worker.process.pid, signal.SIGKILL)
    with anyio.fail_after(120):
        result = await job
    assert len(result.output["images"]) == 1
    assert pool.retried_jobs == retried + 1
    assert worker.starts == starts + 1 and worker.last_exit == -signal.SIGKILL
    assert worker.last_restart_s is not None


async def test_a_job_whose_worker_keeps_dying_fails_with_worker_lost(
    pool: WorkerPool, tiny_sdxl_dir: Path
) -> None:
    events = StepWatch()
    job = asyncio.create_task(pool.run(SDXL, txt2img(tiny_sdxl_dir, 5000), events))
    worker = pool.workers[0]
    for _ in range(2):
        with anyio.fail_after(120):
            await events.denoising.wait()
        events.denoising.clear()
        assert worker.process is not None
        os.kill(worker.process.pid, signal.SIGKILL)
    with anyio.fail_after(120), pytest.raises(BackendError) as failure:
        await job
    assert failure.value.code == "worker_lost"


async def test_a_job_cancelled_twice_returns_only_once_its_work_has_stopped(
    pool: WorkerPool, tiny_sdxl_dir: Path
) -> None:
    events = StepWatch()
    job = asyncio.create_task(pool.run(SDXL, txt2img(tiny_sdxl_dir, 5000, "twice"), events))
    with anyio.fail_after(120):
        await events.denoising.wait()
    pool.last_cancel_to_free_s = None
    job.cancel()
    await asyncio.sleep(0)  # the first cancel is being handled: the stop has begun
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    # The job returned after the worker reported its work stopped, not at the second cancel.
    assert pool.last_cancel_to_free_s is not None
    assert pool.workers[0].running == 0


async def test_a_worker_stopped_with_sigterm_stops_its_job_which_is_retried_on_its_restart(
    pool: WorkerPool, tiny_sdxl_dir: Path
) -> None:
    events = StepWatch()
    job = asyncio.create_task(pool.run(SDXL, txt2img(tiny_sdxl_dir, 30), events))
    with anyio.fail_after(120):
        await events.denoising.wait()
    worker = pool.workers[0]
    starts, retried = worker.starts, pool.retried_jobs
    assert worker.process is not None
    os.kill(worker.process.pid, signal.SIGTERM)
    with anyio.fail_after(120):
        result = await job
    assert len(result.output["images"]) == 1
    assert pool.retried_jobs == retried + 1
    # It stopped by itself (the job's steps ended, then the process), and came back.
    assert worker.starts == starts + 1 and worker.last_exit == 0
