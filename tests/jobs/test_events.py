"""Live job events: each subscriber gets the job's events in order; one that waits only for
the job's end gets no tokens."""

from __future__ import annotations

from gpubridge.jobs.events import JobEvents


async def test_a_follower_gets_tokens_and_a_waiter_for_the_end_does_not() -> None:
    events = JobEvents()
    async with (
        events.subscribe("job-1") as follower,
        events.subscribe("job-1", tokens=False) as waiter,
    ):
        assert events.follows_tokens("job-1") and events.has_subscribers("job-1")
        events.publish("job-1", "token", {"text": "Hi"})
        events.publish("job-1", "progress", {"stage": "x"})
        events.publish("job-2", "token", {"text": "not this job"})
        events.publish("job-1", "status", {"status": "completed"})
        got = [follower.get_nowait() for _ in range(follower.qsize())]
        assert [item["event"] for item in got] == ["token", "progress", "status"]
        got = [waiter.get_nowait() for _ in range(waiter.qsize())]
        assert [item["event"] for item in got] == ["progress", "status"]
    assert not events.has_subscribers("job-1") and events.subscribed() == []


async def test_without_a_follower_nobody_follows_the_tokens() -> None:
    events = JobEvents()
    assert not events.follows_tokens("job-1")
    async with events.subscribe("job-1", tokens=False) as waiter:
        assert not events.follows_tokens("job-1")
        events.publish("job-1", "token", {"text": "Hi"})
        assert waiter.empty()
