from __future__ import annotations

import asyncio

import pytest

from gpubridge.engines.base import BackendConfig, EngineEvent, EngineRequest, ModelRef
from gpubridge.engines.registry import EngineRegistry
from gpubridge.engines.router import Router, order_backends
from gpubridge.errors import BackendError, InvalidInput, ServiceUnavailable
from tests.support.openai_upstream import Upstream, closed_port
from tests.support.scripted_engine import ScriptedEngine, factory_for

REQUEST = EngineRequest("job-1", "llm-4090", ModelRef("tiny", "tiny"), {"prompt": "hi"})


def backend(
    name: str, *, latency: float = 1.0, cost: float = 1.0, **extra: object
) -> BackendConfig:
    return BackendConfig(
        name=name, type="scripted", expected_latency_s=latency, cost_weight=cost, **extra
    )


def router_for(*engines: ScriptedEngine) -> Router:
    registry = EngineRegistry()
    registry.register("scripted", factory_for({e.name: e for e in engines}))
    return Router(registry)


class Events:
    def __init__(self) -> None:
        self.seen: list[EngineEvent] = []

    async def __call__(self, event: EngineEvent) -> None:
        self.seen.append(event)


BACKENDS = [
    backend("a", latency=3.0, cost=0.5),
    backend("b", latency=1.0, cost=2.0),
    backend("c", latency=1.0, cost=0.5),
]


@pytest.mark.parametrize(
    ("priority", "expected"),
    [(None, ["a", "b", "c"]), ("fast", ["b", "c", "a"]), ("cheap", ["a", "c", "b"])],
)
def test_priority_orders_backends_keeping_catalog_order_on_ties(
    priority: str | None, expected: list[str]
) -> None:
    assert [b.name for b in order_backends(BACKENDS, priority)] == expected


@pytest.mark.parametrize(("priority", "served_by"), [(None, "a"), ("fast", "b"), ("cheap", "a")])
async def test_the_first_backend_in_priority_order_serves(
    priority: str | None, served_by: str
) -> None:
    router = router_for(ScriptedEngine("a"), ScriptedEngine("b"), ScriptedEngine("c"))
    async with asyncio.timeout(10):
        routed = await router.execute(BACKENDS, REQUEST, Events(), priority)
    assert routed.backend == served_by
    assert routed.result.output["served_by"] == served_by
    assert routed.attempts == []


@pytest.mark.parametrize("error", [BackendError("upstream down"), RuntimeError("boom")])
async def test_a_failing_backend_fails_over_to_the_next(error: Exception) -> None:
    first, second = ScriptedEngine("a", tokens=(), error=error), ScriptedEngine("b")
    router = router_for(first, second)
    async with asyncio.timeout(10):
        routed = await router.execute([backend("a"), backend("b")], REQUEST, Events(), None)
    assert routed.backend == "b"
    assert [a["backend"] for a in routed.attempts] == ["a"]
    assert ("upstream down" if isinstance(error, BackendError) else "boom") in routed.attempts[0][
        "error"
    ]


async def test_when_every_backend_fails_the_error_lists_each_attempt() -> None:
    router = router_for(
        ScriptedEngine("a", error=BackendError("first broke")),
        ScriptedEngine("b", error=ValueError("second broke")),
    )
    async with asyncio.timeout(10):
        with pytest.raises(BackendError) as caught:
            await router.execute([backend("a"), backend("b")], REQUEST, Events(), None)
    assert "a: first broke" in caught.value.message
    assert "b: ValueError: second broke" in caught.value.message
    assert [a["backend"] for a in caught.value.details["attempts"]] == ["a", "b"]
    assert caught.value.code == "backend_error"


async def test_invalid_input_is_not_retried_on_another_backend() -> None:
    first = ScriptedEngine("a", error=InvalidInput("prompt is required"))
    second = ScriptedEngine("b")
    router = router_for(first, second)
    async with asyncio.timeout(10):
        with pytest.raises(InvalidInput):
            await router.execute([backend("a"), backend("b")], REQUEST, Events(), None)
    assert second.calls == 0


async def test_no_backends_is_service_unavailable() -> None:
    async with asyncio.timeout(10):
        with pytest.raises(ServiceUnavailable) as caught:
            await router_for().execute([], REQUEST, Events(), None)
    assert caught.value.code == "service_unavailable"


async def test_a_backend_of_unknown_type_is_skipped_like_a_failure() -> None:
    router = router_for(ScriptedEngine("b"))
    ghost = BackendConfig(name="ghost", type="quantum")
    async with asyncio.timeout(10):
        routed = await router.execute([ghost, backend("b")], REQUEST, Events(), None)
    assert routed.backend == "b"
    assert "quantum" in routed.attempts[0]["error"]


async def test_failing_after_streaming_announces_that_the_output_restarts() -> None:
    router = router_for(
        ScriptedEngine("a", tokens=("par", "tial"), error=BackendError("dropped")),
        ScriptedEngine("b", tokens=("whole",)),
    )
    events = Events()
    async with asyncio.timeout(10):
        routed = await router.execute([backend("a"), backend("b")], REQUEST, events, None)
    assert routed.result.output["text"] == "whole"
    kinds = [(e.kind, e.data.get("text")) for e in events.seen]
    assert kinds == [("token", "par"), ("token", "tial"), ("log", None), ("token", "whole")]
    restart = events.seen[2].data
    assert restart["restart"] is True
    assert restart["failed_backend"] == "a"
    assert restart["backend"] == "b"


async def test_failing_before_streaming_sends_no_restart_notice() -> None:
    router = router_for(
        ScriptedEngine("a", tokens=(), error=BackendError("x")), ScriptedEngine("b")
    )
    events = Events()
    async with asyncio.timeout(10):
        await router.execute([backend("a"), backend("b")], REQUEST, events, None)
    assert [e.kind for e in events.seen] == ["token"]


async def test_concurrent_jobs_on_a_backend_never_exceed_its_concurrency() -> None:
    gate = asyncio.Event()
    engine = ScriptedEngine("a", gate=gate)
    router = router_for(engine)
    limited = [backend("a", concurrency=2)]
    async with asyncio.timeout(10):
        jobs = [
            asyncio.ensure_future(router.execute(limited, REQUEST, Events(), None))
            for _ in range(5)
        ]
        for _ in range(2):
            await engine.started.get()
        assert engine.running == 2
        gate.set()
        results = await asyncio.gather(*jobs)
    assert [r.backend for r in results] == ["a"] * 5
    assert engine.calls == 5
    assert engine.max_running == 2


async def test_cancelling_a_job_does_not_fail_over() -> None:
    gate = asyncio.Event()
    first, second = ScriptedEngine("a", gate=gate), ScriptedEngine("b")
    router = router_for(first, second)
    async with asyncio.timeout(10):
        job = asyncio.ensure_future(
            router.execute([backend("a"), backend("b")], REQUEST, Events(), None)
        )
        await first.started.get()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
    assert second.calls == 0


async def test_an_unreachable_remote_upstream_fails_over_to_a_healthy_one(
    upstream: Upstream,
) -> None:
    down = f"http://127.0.0.1:{closed_port()}/v1"
    backends = [
        BackendConfig(name="down", type="openai", options={"base_url": down}),
        BackendConfig(name="healthy", type="openai", options={"base_url": upstream.base_url}),
    ]
    registry = EngineRegistry()
    events = Events()
    try:
        async with asyncio.timeout(10):
            routed = await Router(registry).execute(backends, REQUEST, events, None)
    finally:
        await registry.close()
    assert routed.backend == "healthy"
    assert routed.result.output["text"] == "Hello, world!"
    assert "down" in routed.attempts[0]["error"]
    # Asked for one JSON answer (nobody streams this job): its text comes as one token.
    assert [e.kind for e in events.seen] == ["token"]
    assert "".join(e.data["text"] for e in events.seen) == "Hello, world!"
