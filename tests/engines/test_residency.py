from __future__ import annotations

import asyncio
import threading

import pytest

from gpubridge.engines.base import EngineEvent
from gpubridge.engines.residency import ModelCache, Resident


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


async def test_least_recently_used_models_are_evicted_beyond_the_budget() -> None:
    cache = ModelCache(250, measure=lambda model: int(model.split(":")[1]))
    engine: Resident[str] = Resident(cache, "engine")
    await engine.get("a", lambda: "a:100")
    await engine.get("b", lambda: "b:100")
    await engine.get("a", lambda: "a:100")  # a is now more recently used than b
    await engine.get("c", lambda: "c:100")
    assert cache.keys() == [("engine", "a"), ("engine", "c")]
    assert cache.resident_bytes == 200
    assert cache.evictions == 1


async def test_a_model_larger_than_the_budget_still_loads_alone() -> None:
    cache = ModelCache(50, measure=lambda model: 100)
    engine: Resident[str] = Resident(cache, "engine")
    await engine.get("a", lambda: "a")
    await engine.get("b", lambda: "b")
    assert cache.keys() == [("engine", "b")]


async def test_engines_share_the_budget_and_clear_only_their_own_models() -> None:
    cache = ModelCache(None, measure=lambda model: 1)
    first: Resident[str] = Resident(cache, "first")
    second: Resident[str] = Resident(cache, "second")
    await first.get("x", lambda: "x1")
    await second.get("x", lambda: "x2")
    assert await second.get("x", lambda: "never") == "x2"
    assert first.clear() == ["x1"]
    assert cache.keys() == [("second", "x")]


async def test_a_wait_for_a_load_reports_progress_and_a_warm_model_reports_none() -> None:
    events: list[EngineEvent] = []

    async def emit(event: EngineEvent) -> None:
        events.append(event)

    engine: Resident[str] = Resident(ModelCache(None, measure=lambda model: 1), "engine")
    await engine.get("src", lambda: "model", emit=emit, label="tiny")
    assert [e.data["stage"] for e in events] == ["loading_model", "model_loaded"]
    assert all(e.kind == "progress" and e.data["model"] == "tiny" for e in events)
    await engine.get("src", lambda: "model", emit=emit, label="tiny")
    assert len(events) == 2


async def test_a_runtime_that_sets_device_memory_aside_counts_as_what_it_reserved() -> None:
    """vLLM reserves its share of the card itself: the cache counts that share, so the budget
    holds with it (its own objects hold no tensor the cache could measure)."""
    from dataclasses import dataclass

    @dataclass(slots=True)
    class Reserved:
        engine: object
        reserved_device_bytes: int

    cache = ModelCache(budget_bytes=1000)
    engine: Resident[Reserved] = Resident(cache, "llm")
    await engine.get("big", lambda: Reserved(object(), 700))
    assert cache.resident_bytes == 700
    await engine.get("second", lambda: Reserved(object(), 600))
    assert cache.keys() == [("llm", "second")]  # 1300 > 1000: the first went


async def test_a_load_that_ends_while_a_use_reports_waiting_is_not_started_again() -> None:
    """A job's ``loading_model`` event goes through the store, which takes a while: a load
    that ends meanwhile (another job's) is the one this use gets."""
    resident: Resident[str] = Resident()
    loads: list[int] = []
    reporting, go_on = asyncio.Event(), asyncio.Event()

    def load() -> str:
        loads.append(1)
        return "model"

    async def slow_emit(event: EngineEvent) -> None:
        if event.data["stage"] == "loading_model":
            reporting.set()
            await go_on.wait()

    async with asyncio.timeout(10):
        waiting = asyncio.ensure_future(resident.get("src", load, emit=slow_emit))
        await reporting.wait()
        assert await resident.get("src", load) == "model"  # another use, without events
        go_on.set()
        assert await waiting == "model"
    assert len(loads) == 1
