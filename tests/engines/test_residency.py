from __future__ import annotations

import asyncio
import threading

import pytest

from gpubridge.engines.residency import Resident


async def test_concurrent_first_uses_share_one_load() -> None:
    resident: Resident[str] = Resident()
    started, release = threading.Event(), threading.Event()
    loads = []

    def load() -> str:
        loads.append(1)
        started.set()
        release.wait(10)
        return "model"

    async with asyncio.timeout(10):
        first = asyncio.ensure_future(resident.get("src", load))
        second = asyncio.ensure_future(resident.get("src", load))
        await asyncio.to_thread(started.wait, 10)
        release.set()
        assert list(await asyncio.gather(first, second)) == ["model", "model"]
        assert await resident.get("src", load) == "model"
    assert len(loads) == 1
    assert "src" in resident


async def test_a_failed_load_is_retried_by_the_next_use() -> None:
    resident: Resident[str] = Resident()
    attempts: list[int] = []

    def load() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk")
        return "model"

    async with asyncio.timeout(10):
        with pytest.raises(OSError):
            await resident.get("src", load)
        assert await resident.get("src", load) == "model"


async def test_a_cancelled_waiter_does_not_lose_the_load() -> None:
    resident: Resident[str] = Resident()
    started, release = threading.Event(), threading.Event()
    loads = []

    def load() -> str:
        loads.append(1)
        started.set()
        release.wait(10)
        return "model"

    async with asyncio.timeout(10):
        waiter = asyncio.ensure_future(resident.get("src", load))
        await asyncio.to_thread(started.wait, 10)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        assert await resident.get("src", load) == "model"
    assert len(loads) == 1


async def test_clear_forgets_models_and_returns_them() -> None:
    resident: Resident[str] = Resident()
    async with asyncio.timeout(10):
        await resident.get("src", lambda: "model")
    assert resident.clear() == ["model"]
    assert "src" not in resident
