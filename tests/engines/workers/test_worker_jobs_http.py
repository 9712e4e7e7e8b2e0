"""POST /run through supervised worker processes: a cancel frees the worker within two seconds
(between two steps, or by a restart when one step outlasts the grace period) and refunds, a
kill -9 of the worker leaves the gateway answering and the money exact."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from gpubridge.engines.workers.pool import WorkerPool
from tests.engines.diffusion.conftest import tiny_sdxl_dir
from tests.support.service_runs import CREDIT, ServiceRuns, StartServices

pytestmark = [pytest.mark.slow]

__all__ = ["tiny_sdxl_dir"]


def tiny_image_service(model_dir: Path, steps: int) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        service = data["services"]["image-4090"]
        model = next(m for m in service["models"] if m.get("default"))
        model["source"] = str(model_dir)
        model["options"] = {"pipeline": "StableDiffusionXLPipeline", "num_inference_steps": steps}

    return edit


@pytest.fixture
async def long_jobs(services: StartServices, tiny_sdxl_dir: Path) -> AsyncIterator[ServiceRuns]:
    edit = tiny_image_service(tiny_sdxl_dir, steps=3000)
    async with services(edit, worker_mode="process", worker_cancel_grace_s=1.5) as runs:
        yield runs


@pytest.fixture
async def short_jobs(services: StartServices, tiny_sdxl_dir: Path) -> AsyncIterator[ServiceRuns]:
    async with services(tiny_image_service(tiny_sdxl_dir, steps=6), worker_mode="process") as runs:
        yield runs


def pool_of(runs: ServiceRuns) -> WorkerPool:
    pool = runs.app.state.components.workers
    assert isinstance(pool, WorkerPool)
    return pool


async def denoising(runs: ServiceRuns, job_id: str) -> dict[str, Any]:
    """Poll until the job reports a denoising step."""
    with anyio.fail_after(120):
        while True:
            view = (await runs.client.get(f"/status/{job_id}")).json()
            if (view.get("progress") or {}).get("stage") == "denoising":
                return view
            await anyio.sleep(0.05)


async def balance(runs: ServiceRuns) -> int:
    answer = await runs.client.get("/account/balance", headers=runs.headers)
    return round(answer.json()["balance"] * 1_000_000)


async def test_cancelling_a_job_stops_it_in_the_worker_refunds_it_and_frees_the_worker(
    long_jobs: ServiceRuns,
) -> None:
    submitted = await long_jobs.submit(
        "image-4090", {"prompt": "a fox", "width": 256, "height": 256}
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    await denoising(long_jobs, job_id)
    pool = pool_of(long_jobs)
    cancelled_at = time.monotonic()
    answer = await long_jobs.client.post(f"/cancel/{job_id}", headers=long_jobs.headers)
    assert answer.status_code == 200, answer.text
    with anyio.fail_after(2):
        while pool.workers[0].running:
            await anyio.sleep(0.01)
    freed_s = time.monotonic() - cancelled_at
    assert freed_s < 2.0
    view = (await long_jobs.client.get(f"/status/{job_id}")).json()
    assert view["status"] == "cancelled"
    assert await balance(long_jobs) == CREDIT
    metrics = (await long_jobs.client.get("/metrics")).text
    assert 'gpubridge_worker_starts_total{device="cpu",worker="worker-0"}' in metrics
    assert "gpubridge_worker_last_cancel_to_free_seconds" in metrics
    report = await long_jobs.app.state.gateway.check_ledger()
    assert report.ok, report.summary()


async def test_a_kill_9_of_the_worker_mid_job_leaves_the_gateway_answering_and_money_exact(
    short_jobs: ServiceRuns,
) -> None:
    submitted = await short_jobs.submit(
        "image-4090", {"prompt": "a fox", "width": 256, "height": 256}
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    await denoising(short_jobs, job_id)
    worker = pool_of(short_jobs).workers[0]
    assert worker.process is not None
    os.kill(worker.process.pid, signal.SIGKILL)
    health = await short_jobs.client.get("/healthz")
    assert health.status_code == 200
    with anyio.fail_after(180):
        while True:
            view = (await short_jobs.client.get(f"/status/{job_id}")).json()
            if view["status"] in ("completed", "failed", "cancelled"):
                break
            await anyio.sleep(0.1)
    # Nothing had been output: the job ran again on the restarted worker, charged once.
    assert view["status"] == "completed", view
    assert worker.starts == 2
    assert await balance(short_jobs) == CREDIT - round(view["cost_usd"] * 1_000_000)
    report = await short_jobs.app.state.gateway.check_ledger()
    assert report.ok, report.summary()
