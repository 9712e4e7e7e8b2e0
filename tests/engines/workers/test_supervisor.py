"""A supervised worker and the processes it started: however the worker ends (killed by the
supervisor, killed from outside, stopped), its children end with it.

The worker here is started through a small shell script that starts a long-lived child and
then becomes the real ``gpubridge worker`` (``exec``), so the child is the worker process's own,
as vLLM's engine core is."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from gpubridge.engines.workers.groups import is_running
from gpubridge.engines.workers.supervisor import WorkerProcess
from gpubridge.settings import WorkerSpec

pytestmark = [pytest.mark.slow]

WRAPPER = """#!/bin/sh
sleep 300 &
echo $! >> "$GPUBRIDGE_TEST_CHILD_PIDS"
exec "$GPUBRIDGE_TEST_PYTHON" "$@"
"""


@pytest.fixture
async def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WorkerProcess]:
    wrapper = tmp_path / "python-with-a-child"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    monkeypatch.setenv("GPUBRIDGE_TEST_CHILD_PIDS", str(tmp_path / "children"))
    monkeypatch.setenv("GPUBRIDGE_TEST_PYTHON", sys.executable)
    process = WorkerProcess(
        WorkerSpec(name="worker-g", device="cpu"),
        memory_budget_bytes=None,
        start_timeout_s=60,
        python=str(wrapper),
    )
    supervising = asyncio.create_task(process.supervise())
    try:
        yield process
    finally:
        await process.close()
        supervising.cancel()
        await asyncio.gather(supervising, return_exceptions=True)
        for pid in children(tmp_path):
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)


def children(tmp_path: Path) -> list[int]:
    path = tmp_path / "children"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def started(worker: WorkerProcess, tmp_path: Path, count: int) -> int:
    """Wait for the worker's ``count``-th start to be ready; its child's pid."""
    with anyio.fail_after(90):
        while worker.starts < count or not worker.ready.is_set():
            await asyncio.sleep(0.05)
    pids = children(tmp_path)
    assert len(pids) == count
    assert is_running(pids[-1])
    return pids[-1]


async def gone(pid: int) -> None:
    with anyio.fail_after(10):
        while is_running(pid):
            await asyncio.sleep(0.02)


async def test_the_children_of_a_worker_end_when_it_is_killed_crashes_or_stops(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    # Killed by the supervisor (a cancelled job that would not stop).
    child = await started(worker, tmp_path, 1)
    worker.kill()
    await gone(child)
    with anyio.fail_after(10):
        while worker.last_exit is None:
            await asyncio.sleep(0.02)
    assert worker.last_exit == -signal.SIGKILL

    # Killed from outside (the OOM killer, a segfault): only the worker process itself dies.
    child = await started(worker, tmp_path, 2)
    assert worker.process is not None and worker.process.pid != os.getpid()
    os.kill(worker.process.pid, signal.SIGKILL)
    await gone(child)

    # Stopped with the gateway: SIGTERM, a graceful exit, and the child ends too.
    child = await started(worker, tmp_path, 3)
    with anyio.fail_after(30):
        await worker.close()
    await gone(child)
    assert worker.process.returncode == 0  # it exited by itself, not killed
