"""One SQLite writer with group commit.

SQLite takes one writer at a time. Rather than every request opening its own transaction and
handing work to a driver thread statement by statement, the short transactions of the money
path are submitted here as plain functions of a (synchronous) SQLAlchemy connection. One task
owns the writer connection; it lets the loop turn once more, takes everything queued and runs
it in one ``BEGIN IMMEDIATE ... COMMIT`` with a SAVEPOINT per submitted function (one that
raises rolls back only its own work), then answers each caller. So at low load a batch is one
transaction, and under load many transactions share one commit.

A batch runs on the event loop's own thread when it can take the write lock at once: a
hop to a writer thread and back costs several times the transaction itself (about 100 us of
CPU against 20 us for a lone one), and under load far more, since the writer thread then waits
for the GIL (5 ms at a time) before each of its steps: 10 ms a batch at 16 concurrent paid
requests. Should another connection hold the lock, the batch tries again on the loop's thread
every millisecond for a short while (the loop going on meanwhile), then goes to the writer
thread, which waits for the lock there; the loop never blocks on it.

Nothing is acknowledged before its commit: a caller's result (or its own error) is set only
after ``COMMIT`` returned. When the commit fails, every caller of the batch gets ``WriteFailed``
and nothing of the batch is stored. A caller cancelled before its batch starts is skipped; one
cancelled while its batch runs does not see the result, which goes to its ``on_late`` callback
once committed (so that what the work started is not left unattended).

Reads and other writes keep using the async engine's own connection; those writes wait for
the writer's lock through ``busy_timeout``, as they would for any other SQLite writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from gpubridge.db.engine import SQLITE_PRAGMAS
from gpubridge.db.logs import DROP_DEBUG

log = logging.getLogger(__name__)

T = TypeVar("T")

Work = Callable[[Connection], T]

MAX_BATCH = 256
"""The most transactions committed together."""

LOCK_WAIT_ON_LOOP_S = 0.05
"""How long a batch that finds the write lock taken tries again on the loop's thread (every
millisecond, the loop running meanwhile) before it goes to the writer thread to wait there."""


class WriteFailed(Exception):
    """The batch a transaction ran in could not be committed: nothing of it was stored."""


@dataclass
class _Item(Generic[T]):
    work: Work[T]
    future: asyncio.Future[T]
    on_late: Callable[[T], None] | None


Outcomes = list[tuple[bool, Any]]


@dataclass
class _Batch:
    """What the writer thread is handed: ``job`` to run (a batch's commit, or the disconnection,
    ``last`` before the thread ends); ``done`` is set on ``loop`` with what it returned."""

    job: Callable[[], Outcomes]
    done: asyncio.Future[Outcomes]
    loop: asyncio.AbstractEventLoop
    last: bool = False


class Writer:
    """The single writer of one SQLite database file (``url``: a SQLAlchemy SQLite URL, with
    or without the async driver)."""

    def __init__(
        self,
        url: str,
        *,
        max_batch: int = MAX_BATCH,
        busy_timeout_ms: int = 10_000,
        on_loop: bool = True,
    ):
        sync_url = make_url(url).set(drivername="sqlite+pysqlite")
        self.max_batch = max_batch
        self.on_loop = on_loop
        """Whether a batch runs on the loop's thread when the lock is free (else always on the
        writer thread)."""
        self.batches = 0
        """Batches committed (or failed) so far."""
        self._busy_timeout_ms = busy_timeout_ms
        # Used by the loop's thread or the writer thread, one batch at a time (``_serve``).
        self._engine: Engine = create_engine(
            sync_url, hide_parameters=True, connect_args={"check_same_thread": False}
        )
        self._waits = True  # whether the connection's busy timeout is on (off when inline)
        event.listen(self._engine, "connect", self._pragmas)
        logger = getattr(self._engine.logger, "logger", self._engine.logger)
        if isinstance(logger, logging.Logger):
            logger.addFilter(DROP_DEBUG)
        self._conn: Connection | None = None
        # A thread of its own fed through a plain queue, rather than an executor: a batch is
        # handed over and answered with one queue put and one loop callback.
        self._inbox: queue.SimpleQueue[_Batch] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._queue: asyncio.Queue[_Item[Any] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def _pragmas(self, dbapi_connection: Any, _record: Any) -> None:
        # The gateway's own settings, checkpoints off the commit included; then this writer's
        # busy timeout.
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        cursor.close()

    async def run(self, work: Work[T], *, on_late: Callable[[T], None] | None = None) -> T:
        """Run ``work`` in the writer's next transaction; its result once committed."""
        if self._closed:
            raise RuntimeError("the database writer is closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve())
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(work, future, on_late))
        return await future

    async def close(self) -> None:
        """Answer what is queued, then close the connection and the thread."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
        if self._thread is None:
            self._disconnect()
            return
        await self._hand_over(self._disconnected, last=True)
        await asyncio.to_thread(self._thread.join)

    async def _serve(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            # One more turn of the loop before the batch is taken: the requests whose turn
            # comes next (a response just in, a body just read) submit theirs to the same
            # commit. It costs a lone transaction one idle turn; at 16 concurrent paid
            # requests it cut the CPU per request by a fifth (fewer commits, fewer pages).
            await asyncio.sleep(0)
            batch: list[_Item[Any]] = []
            for item in self._take(first):
                if item is None:
                    stopping = True
                elif not item.future.cancelled():
                    batch.append(item)
            if not batch:
                continue
            works = [i.work for i in batch]
            try:
                here = await self._commit_on_loop(works) if self.on_loop else None
                outcomes = (
                    here
                    if here is not None
                    else await self._hand_over(functools.partial(self._commit, works))
                )
            except Exception as exc:  # no connection: answer, and try again for the next batch
                log.exception("the database writer could not run a batch")
                outcomes = [(False, _failed(exc)) for _ in batch]
            self.batches += 1
            for item, (ok, value) in zip(batch, outcomes, strict=True):
                _answer(item, ok, value)

    def _take(self, first: _Item[Any] | None) -> list[_Item[Any] | None]:
        taken = [first]
        while len(taken) < self.max_batch and not self._queue.empty():
            taken.append(self._queue.get_nowait())
        return taken

    async def _hand_over(self, job: Callable[[], Outcomes], *, last: bool = False) -> Outcomes:
        """What ``job`` returns, run on the writer thread (its last job when ``last``)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._thread_main, name="sqlite-writer", daemon=True
            )
            self._thread.start()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Outcomes] = loop.create_future()
        self._inbox.put(_Batch(job, done, loop, last))
        # Shielded: a cancelled serving task must not drop what the thread goes on to commit.
        return await asyncio.shield(done)

    async def _commit_on_loop(self, works: list[Work[Any]]) -> Outcomes | None:
        """Commit ``works`` on the loop's thread once the write lock is free, trying again for
        up to ``LOCK_WAIT_ON_LOOP_S``; None if it stays taken, for the writer thread to wait.

        The lock is mostly taken for a few milliseconds (the checkpoint's RESTART, another
        short transaction). Handed to the writer thread, a batch waited for the GIL at each of
        its steps instead: at 16 concurrent paid requests, every checkpoint made a whole round
        of requests some 20 ms late."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT_ON_LOOP_S
        outcomes = self._commit_here(works)
        while outcomes is None and loop.time() < deadline:
            await asyncio.sleep(0.001)
            outcomes = self._commit_here(works)
        return outcomes

    def _commit_here(self, works: list[Work[Any]]) -> Outcomes | None:
        """Commit ``works`` on this thread if the write lock is free now; None when it is not
        (or the connection cannot be had here), for the writer thread to do it."""
        try:
            raw = self._raw(waits=False)
            raw.execute("BEGIN IMMEDIATE")
        except Exception:  # busy, or no connection: the writer thread waits, or reports it
            return None
        return self._commit(works, begun=True)

    # -- on the writer thread, or the loop's while the lock is free ----------------------
    def _raw(self, *, waits: bool) -> Any:
        """The driver connection, its busy timeout on (``waits``) or off."""
        raw = self._connection().connection.dbapi_connection
        assert raw is not None
        if waits != self._waits:
            raw.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms) if waits else 0}")
            self._waits = waits
        return raw

    def _thread_main(self) -> None:
        while True:
            batch = self._inbox.get()
            outcome: Outcomes | BaseException
            try:
                outcome = batch.job()
            except Exception as exc:
                outcome = exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to answer
                batch.loop.call_soon_threadsafe(_resolve, batch.done, outcome)
            if batch.last:
                return

    def _disconnected(self) -> Outcomes:
        self._disconnect()
        return []

    def _connection(self) -> Connection:
        if self._conn is None:
            # The driver's own transaction handling is off: this class says BEGIN and COMMIT.
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def _commit(self, works: list[Work[Any]], *, begun: bool = False) -> Outcomes:
        """Run ``works`` in one transaction (``begun``: already opened by the caller)."""
        conn = self._connection()
        raw = self._raw(waits=not begun)
        alone = len(works) == 1
        outcomes: Outcomes = []
        try:
            if not begun:
                raw.execute("BEGIN IMMEDIATE")
            for work in works:
                # A transaction alone in its batch needs no savepoint: the batch is its own.
                if not alone:
                    raw.execute("SAVEPOINT work")
                try:
                    value = work(conn)
                except Exception as exc:
                    if alone:
                        self._roll_back()
                        return [(False, exc)]
                    raw.execute("ROLLBACK TO work")
                    raw.execute("RELEASE work")
                    outcomes.append((False, exc))
                else:
                    if not alone:
                        raw.execute("RELEASE work")
                    outcomes.append((True, value))
            raw.execute("COMMIT")
        except Exception as exc:
            log.exception("a batch of database writes could not be committed")
            self._roll_back()
            return [(False, _failed(exc)) for _ in works]
        return outcomes

    def _roll_back(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            raw = conn.connection.dbapi_connection
            if raw is not None and raw.in_transaction:
                raw.rollback()
        except Exception:
            log.exception("rolling back a failed batch failed; the connection is replaced")
            conn.invalidate()
            self._conn = None
            self._waits = True  # a new connection starts with its busy timeout on

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._waits = True  # a new connection starts with its busy timeout on
        self._engine.dispose()


def _resolve(done: asyncio.Future[Outcomes], outcome: Outcomes | BaseException) -> None:
    if done.cancelled():
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)


def _failed(cause: Exception) -> WriteFailed:
    failed = WriteFailed(f"the transaction was not committed: {type(cause).__name__}")
    failed.__cause__ = cause
    return failed


def _answer(item: _Item[Any], ok: bool, value: Any) -> None:
    if not item.future.cancelled():
        if ok:
            item.future.set_result(value)
        else:
            item.future.set_exception(value)
        return
    if ok and item.on_late is not None:
        try:
            item.on_late(value)
        except Exception:
            log.exception("handing over the work of a caller that went away failed")
