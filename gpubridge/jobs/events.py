"""In-process fan-out of live job events (status changes, progress, LLM tokens).

Events reach subscribers of the process that runs the job. On PostgreSQL a job's end reaches
the other replicas as a notice (``notifications``), which they publish here too; progress and
tokens do not, and a subscriber on another replica polls the job store for them.

A subscriber that waits only for a job's end (a synchronous ``/run`` that does not stream)
subscribes without tokens: an LLM job that nobody follows then publishes its tokens to no one.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

QUEUE_LIMIT = 10_000


class JobEvents:
    def __init__(self) -> None:
        # Each job's subscribers, and whether each wants the job's tokens.
        self._subscribers: defaultdict[str, dict[asyncio.Queue[dict[str, Any]], bool]] = (
            defaultdict(dict)
        )

    def publish(self, job_id: str, event: str, data: dict[str, Any]) -> None:
        subscribers = self._subscribers.get(job_id)
        if not subscribers:
            return
        for queue, tokens in subscribers.items():
            if (tokens or event != "token") and queue.qsize() < QUEUE_LIMIT:
                queue.put_nowait({"event": event, "data": data})

    def follows_tokens(self, job_id: str) -> bool:
        """Whether anyone here follows ``job_id``'s tokens."""
        return any(self._subscribers.get(job_id, {}).values())

    def has_subscribers(self, job_id: str) -> bool:
        return bool(self._subscribers.get(job_id))

    def subscribed(self) -> list[str]:
        """The jobs someone here is waiting on."""
        return list(self._subscribers)

    @asynccontextmanager
    async def subscribe(
        self, job_id: str, *, tokens: bool = True
    ) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of ``job_id``'s events while the block runs (its tokens only if ``tokens``)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers[job_id][queue] = tokens
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get(job_id)
            if subscribers is not None:
                subscribers.pop(queue, None)
                if not subscribers:
                    del self._subscribers[job_id]
