"""Job notices between gateway replicas, through PostgreSQL LISTEN/NOTIFY.

A statement that queues a job or ends one carries a ``pg_notify`` in its RETURNING clause
(``queued_notice``, ``status_notice``): the notice is sent by the transaction that makes the
change, so PostgreSQL delivers it only once that commits, and never for a change rolled back or
refused by its guard (no row, no notice). A sync job answered inline ends without one: its id is
first shown in that answer, so no other replica can be waiting for it
(``Gateway.wait_to_answer``).

Each replica holds one dedicated connection that LISTENs on both channels (``JobListener``) and
reconnects with backoff when it drops; what it hears goes to callbacks. SQLite has no such
thing: its replicas (processes on one machine) keep polling, and these clauses are left out.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, String, bindparam, func
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db import Database
from gpubridge.db.direct import connect_arguments
from gpubridge.db.tables import jobs
from gpubridge.jobs.status import JobStatus

if TYPE_CHECKING:
    import asyncpg  # imported where used: a server on SQLite never needs it

log = logging.getLogger(__name__)

STATUS_CHANNEL = "gpubridge_job_status"
"""A job ended (completed, failed, cancelled); payload ``{"id": ..., "status": ...}``."""
QUEUED_CHANNEL = "gpubridge_job_queued"
"""A job is waiting to be claimed (new, or put back); payload the job id."""

Connect = Callable[[], Awaitable["asyncpg.Connection"]]


def notifies(conn: AsyncConnection) -> bool:
    """Whether this connection's database carries notices (PostgreSQL)."""
    return conn.dialect.name == "postgresql"


def status_notice() -> ColumnElement[Any]:
    """A RETURNING column that tells listeners the job ended, from the bind ``notice``
    (``status_payload``)."""
    return func.pg_notify(STATUS_CHANNEL, bindparam("notice", type_=String)).label("notified")


def status_payload(job_id: str, status: JobStatus) -> str:
    return json.dumps({"id": job_id, "status": status.value})


def queued_notice() -> ColumnElement[Any]:
    """A RETURNING column that tells listeners the row's job waits to be claimed."""
    return func.pg_notify(QUEUED_CHANNEL, jobs.c.id).label("notified")


class JobListener:
    """One replica's dedicated LISTEN connection, kept open: after a drop (a restarted server,
    a killed backend, a half-open socket found by the keep-alive query) it reconnects, at once
    if it had listened a while and otherwise with exponential backoff, then calls
    ``on_reconnect``, since notices sent meanwhile are lost.

    Callbacks run in the event loop and must not block: ``on_status(job_id, status)``,
    ``on_queued(job_id)``."""

    def __init__(
        self,
        connect: Connect,
        *,
        on_status: Callable[[str, JobStatus], None],
        on_queued: Callable[[str], None],
        on_reconnect: Callable[[], None],
        keepalive_s: float = 10.0,
        backoff_s: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        self._connect = connect
        self.on_status = on_status
        self.on_queued = on_queued
        self.on_reconnect = on_reconnect
        self.keepalive_s = keepalive_s
        self.backoff_s = backoff_s
        self.connections = 0
        """Connections made so far (each one listening)."""
        self.backend_pid: int | None = None
        """The server process of the current connection, while listening."""
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_database(cls, db: Database, **kwargs: Any) -> JobListener:
        """A listener on ``db``'s PostgreSQL server, connecting as its engine does."""
        import asyncpg

        args, options = connect_arguments(db.engine)
        connect = functools.partial(asyncpg.connect, *args, **options)
        return cls(connect, **kwargs)

    @property
    def listening(self) -> bool:
        return self.backend_pid is not None

    async def start(self, timeout_s: float = 10.0) -> None:
        """Listen in the background; returns once the first connection listens (or after
        ``timeout_s``, while it keeps trying)."""
        made = self.connections
        self._task = asyncio.create_task(self._run(), name="job-listener")
        try:
            await asyncio.wait_for(self.wait_connected(made), timeout_s)
        except TimeoutError:
            log.warning("job notices are not heard yet; replicas fall back to polling")

    async def stop(self) -> None:
        """Stop listening (``start`` again counts as a reconnection)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def wait_connected(self, after: int) -> int:
        """Wait until more than ``after`` connections were made; returns how many."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.connections > after)
            return self.connections

    async def _run(self) -> None:
        delay = self.backoff_s[0]
        while True:
            made, began = self.connections, time.monotonic()
            try:
                conn = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cannot connect to listen for job notices: %s", type(exc).__name__)
            else:
                try:
                    await self._listen(conn)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("the job notice connection dropped: %s", type(exc).__name__)
                finally:
                    self.backend_pid = None
                    conn.terminate()
            if self.connections > made and time.monotonic() - began > self.backoff_s[1]:
                # It listened a while, then dropped: reconnect at once, and back off anew.
                delay = self.backoff_s[0]
                continue
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff_s[1])

    async def _listen(self, conn: asyncpg.Connection) -> None:
        """Listen on ``conn`` until it drops (returns, or raises the error that showed it)."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(STATUS_CHANNEL, self._heard)
        await conn.add_listener(QUEUED_CHANNEL, self._heard)
        async with self._changed:
            self.backend_pid = conn.get_server_pid()
            self.connections += 1
            self._changed.notify_all()
        if self.connections > 1:
            log.info("listening for job notices again; catching up on what was missed")
            self.on_reconnect()
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), self.keepalive_s)
            except TimeoutError:
                # Quiet for a while: make sure the connection still answers.
                await asyncio.wait_for(conn.execute("SELECT 1"), self.keepalive_s)

    def _heard(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        try:
            if channel == QUEUED_CHANNEL:
                self.on_queued(payload)
            elif channel == STATUS_CHANNEL:
                notice = json.loads(payload)
                self.on_status(str(notice["id"]), JobStatus(notice["status"]))
        except Exception:
            log.exception("a job notice could not be handled", extra={"channel": channel})
