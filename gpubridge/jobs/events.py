"""In-process fan-out of live job events (status changes, progress, LLM tokens).

Events reach subscribers of the process that runs the job. On PostgreSQL a job's end reaches
the other replicas as a notice (``notifications``), which they publish here too; progress and
tokens do not, and a subscriber on another replica polls the job store for them.
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
        self._subscribers: defaultdict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)

    def publish(self, job_id: str, event: str, data: dict[str, Any]) -> None:
        for queue in self._subscribers.get(job_id, ()):
            if queue.qsize() < QUEUE_LIMIT:
                queue.put_nowait({"event": event, "data": data})

    def has_subscribers(self, job_id: str) -> bool:
        return bool(self._subscribers.get(job_id))

    def subscribed(self) -> list[str]:
        """The jobs someone here is waiting on."""
        return list(self._subscribers)

    @asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers[job_id].add(queue)
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get(job_id)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[job_id]
