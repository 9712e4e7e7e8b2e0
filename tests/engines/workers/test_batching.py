"""Token events coalesced between a worker and its gateway: fewer frames, the same text, in
order with the other events, and none late by more than the flush interval."""

from __future__ import annotations

import asyncio

import anyio

from gpubridge.engines.base import EngineEvent
from gpubridge.engines.workers.batching import TokenBatcher


class Sent:
    def __init__(self) -> None:
        self.events: list[EngineEvent] = []

    async def __call__(self, event: EngineEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


async def test_tokens_made_together_go_out_as_one_event_with_their_text() -> None:
    sent = Sent()
    batcher = TokenBatcher(sent, every_s=10, max_tokens=100)
    for piece in ("Hel", "lo", ", ", "world"):
        await batcher(EngineEvent("token", {"text": piece}))
    assert sent.events == []  # waiting for the interval
    await batcher.flush()
    assert [e.data for e in sent.events] == [{"text": "Hello, world"}]
    assert batcher.frames == 1


async def test_a_full_batch_goes_out_at_once() -> None:
    sent = Sent()
    batcher = TokenBatcher(sent, every_s=10, max_tokens=3)
    for n in range(7):
        await batcher(EngineEvent("token", {"text": str(n)}))
    assert [e.data["text"] for e in sent.events] == ["012", "345"]
    await batcher.flush()
    assert [e.data["text"] for e in sent.events] == ["012", "345", "6"]


async def test_waiting_tokens_go_out_after_the_interval_without_another_event() -> None:
    sent = Sent()
    batcher = TokenBatcher(sent, every_s=0.01, max_tokens=100)
    await batcher(EngineEvent("token", {"text": "a"}))
    await batcher(EngineEvent("token", {"text": "b"}))
    with anyio.fail_after(5):
        while not sent.events:
            await asyncio.sleep(0.005)
    assert [e.data for e in sent.events] == [{"text": "ab"}]


async def test_other_events_keep_their_place_after_the_tokens_before_them() -> None:
    sent = Sent()
    batcher = TokenBatcher(sent, every_s=10, max_tokens=100)
    await batcher(EngineEvent("token", {"text": "a"}))
    await batcher(EngineEvent("progress", {"stage": "x"}))
    await batcher(EngineEvent("token", {"text": "b"}))
    await batcher(EngineEvent("token", {"text": "c", "logprob": -0.1}))  # not plain: as is
    await batcher.flush()
    assert [(e.kind, e.data) for e in sent.events] == [
        ("token", {"text": "a"}),
        ("progress", {"stage": "x"}),
        ("token", {"text": "b"}),
        ("token", {"text": "c", "logprob": -0.1}),
    ]


async def test_discarded_tokens_never_go_out() -> None:
    sent = Sent()
    batcher = TokenBatcher(sent, every_s=0.01, max_tokens=100)
    await batcher(EngineEvent("token", {"text": "a"}))
    batcher.discard()
    await asyncio.sleep(0.05)
    await batcher.flush()
    assert sent.events == []
