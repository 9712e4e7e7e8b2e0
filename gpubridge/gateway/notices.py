"""What this replica does when other replicas' job notices reach it (PostgreSQL only).

- a job was queued: the dispatcher claims now rather than at its next poll;
- a job ended: its waiters and streams here wake at once (they get its status event, read
  from the store); a cancelled job that runs here stops (the replica that cancelled it refunded
  it, and this one's finish would be refused anyway);
- the listening connection came back after a drop: whatever was missed meanwhile is caught up
  (a claim, and a fresh look at every job waited on here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from gpubridge.db import Database
from gpubridge.gateway.views import job_view
from gpubridge.jobs import store
from gpubridge.jobs.dispatcher import Dispatcher
from gpubridge.jobs.events import JobEvents
from gpubridge.jobs.notifications import JobListener
from gpubridge.jobs.status import JobStatus

log = logging.getLogger(__name__)

WATCH_WITH_NOTICES_S = 10.0
"""How often the dispatcher still looks for jobs ended elsewhere when notices tell it."""
WAIT_POLL_S = 0.05
"""How often a wait reads the store when no notice would wake it."""
WAIT_POLL_WITH_NOTICES_S = 1.0
"""How often a wait still reads the store when notices wake it."""


class Notices:
    """This replica's side of the job notices: its listener (on PostgreSQL; none on SQLite,
    where waits poll the store often and the dispatcher's watch looks every second) and what it
    does with what it hears."""

    def __init__(
        self, db: Database, events: JobEvents, dispatcher: Dispatcher, *, public_url: str
    ) -> None:
        self.db = db
        self.events = events
        self.dispatcher = dispatcher
        self.public_url = public_url
        self.listener: JobListener | None = None
        if db.is_postgres:
            self.listener = JobListener.for_database(
                db,
                on_status=self._ended,
                on_queued=self._queued,
                on_reconnect=self._caught_up,
            )
            # The notice stops a job cancelled elsewhere; the watch is left for what no notice
            # tells (a job failed or requeued by another replica's upkeep).
            dispatcher.watch_s = WATCH_WITH_NOTICES_S
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def live(self) -> bool:
        """Whether job ends on other replicas reach this one as they happen."""
        return self.listener is not None and self.listener.listening

    @property
    def wait_poll_s(self) -> float:
        """How often a wait for a job should read the store."""
        return WAIT_POLL_WITH_NOTICES_S if self.live else WAIT_POLL_S

    async def start(self) -> None:
        if self.listener is not None:
            await self.listener.start()

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _queued(self, _job_id: str) -> None:
        self.dispatcher.notify()

    def _ended(self, job_id: str, status: JobStatus) -> None:
        if status == JobStatus.CANCELLED and self.dispatcher.cancel_local(job_id):
            log.info(
                "job cancelled on another replica; its work here stops", extra={"job_id": job_id}
            )
        if self.events.has_subscribers(job_id):
            self._spawn(self._publish(job_id))

    def _caught_up(self) -> None:
        self.dispatcher.notify()
        for job_id in self.events.subscribed():
            self._spawn(self._publish(job_id))

    async def _publish(self, job_id: str) -> None:
        """Tell this replica's subscribers of a job's end, as its own runner would."""
        try:
            async with self.db.connect() as conn:
                job = await store.get_job(conn, job_id)
        except Exception:
            log.warning("a job's end could not be read", extra={"job_id": job_id}, exc_info=True)
            return
        if job is not None and job.status.is_terminal:
            self.events.publish(job_id, "status", job_view(job, self.public_url))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def task_outcome(task: asyncio.Task[Any]) -> Any:
    """What a job's task returned; None when the task was cancelled (its job was cancelled,
    here or on another replica) while the caller itself was not."""
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if task.cancelled() and (current is None or not current.cancelling()):
            return None
        raise


async def end_event(queue: asyncio.Queue[dict[str, Any]], timeout_s: float) -> None:
    """Wait up to ``timeout_s`` for a status event that ends a job; others are skipped."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while True:
                item = await queue.get()
                status = item["data"].get("status") if item["event"] == "status" else None
                if status is not None and JobStatus(status).is_terminal:
                    return
