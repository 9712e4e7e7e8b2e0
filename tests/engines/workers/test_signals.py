"""A worker stops on its own SIGTERM, never on one sent to a process forked from it (as vLLM's
engine core is), whichever of the worker's threads forked."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import anyio
import pytest

from gpubridge.engines.workers.signals import stop_on_sigterm


def fork_a_sleeper() -> int:
    """Fork a child that just sleeps (a runtime's process); its pid, in the parent."""
    pid = os.fork()
    if pid == 0:  # the child
        try:
            time.sleep(20)
        finally:
            os._exit(0)
    return pid


def wait_status(pid: int, timeout_s: float) -> int | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    return None


async def end_of(pid: int, timeout_s: float = 10.0) -> int:
    """The wait status of the child ``pid`` (killed with SIGKILL if it outlives the wait); the
    event loop runs meanwhile."""
    status = await asyncio.to_thread(wait_status, pid, timeout_s)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(os.waitpid, pid, 0)
        pytest.fail(f"the child {pid} did not end on SIGTERM")
    return status


@pytest.mark.parametrize("forked_in", ["the loop's thread", "a worker thread"])
async def test_sigterm_to_a_forked_child_ends_the_child_not_the_worker(forked_in: str) -> None:
    stops: list[float] = []
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_sigterm(lambda: stops.append(time.monotonic())):
        if forked_in == "a worker thread":
            child = await asyncio.to_thread(fork_a_sleeper)
        else:
            child = fork_a_sleeper()
        await asyncio.sleep(0.2)  # the child is past its fork handlers
        os.kill(child, signal.SIGTERM)
        status = await end_of(child)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        await asyncio.sleep(0.3)  # room for a stray wake-up to reach this loop
        assert stops == []

        os.kill(os.getpid(), signal.SIGTERM)
        with anyio.fail_after(5):
            while not stops:
                await asyncio.sleep(0.01)
    assert len(stops) == 1
    assert signal.getsignal(signal.SIGTERM) == before  # the handler goes with the block
