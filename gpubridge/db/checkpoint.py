"""Checkpoints of SQLite's write-ahead log, off the request path.

In WAL mode a commit appends to ``gpubridge.db-wal``; a checkpoint copies those pages into the
database file. SQLite's default runs one inside whichever commit takes the log past 1,000
pages, so now and then a paid request waited for it (p99 9 ms instead of 5 ms at one request
at a time). The gateway's connections turn that off (``wal_autocheckpoint=0``), and this task
checkpoints every second instead, on a connection of its own in a thread, PASSIVE: it never
waits for, nor blocks, a reader or the writer, and copies what it can.

A PASSIVE checkpoint never lets the log start again, though, beside a writer that keeps writing
(frames arrive while it copies): under steady load the log grew without end (about 30 MB a
second at 500 paid requests a second), and each checkpoint took longer. So each one is followed
by a RESTART that does not wait: it takes the write lock only if it is free at that instant,
copies the few frames written since, and leaves the log for the next transaction to start again
from its beginning. The writer then waits for that short copy (7-35 ms measured here), never
for a whole checkpoint (about 100 ms). A TRUNCATE, which would also empty the file, held the
writer up longer.

The PASSIVE copy runs on a thread of the lowest CPU priority (Linux sets it per thread): where
the server shares a core, the copy takes the time that requests leave idle, rather than a slice
in the middle of a burst. In paired runs here the c=16 p99 fell from a median of 24 ms to 20 ms
while the server had idle time, and did not change on a slower day with less of it. A server
that is never idle would then rarely copy, and the log would grow, so after a copy that found
more than ``LOW_PRIORITY_PAGES`` pages the next runs at normal priority. The RESTART always
runs at normal priority: it holds the write lock, and no request should wait for a thread that
the scheduler keeps waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = 1.0
LOW_PRIORITY_PAGES = 32_768
"""A copy that found more pages in the log than this (128 MB of 4 KB pages) is followed by one
at normal priority."""
LOWEST_PRIORITY = 19


class WalCheckpoints:
    """Checkpoints the write-ahead log of the SQLite database at ``path`` every ``every_s``."""

    def __init__(
        self,
        path: Path,
        every_s: float = CHECKPOINT_EVERY_S,
        low_priority_pages: int = LOW_PRIORITY_PAGES,
    ) -> None:
        self.path = path
        self.every_s = every_s
        self.low_priority_pages = low_priority_pages
        self._pages_found = 0
        self._spare_time: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # the connection: one checkpoint, or the close, at a time

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="sqlite-wal-checkpoints")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # A checkpoint that the cancel left running in its thread finishes first.
        await asyncio.to_thread(self._close)
        if self._spare_time is not None:
            self._spare_time.shutdown(wait=False)
            self._spare_time = None

    async def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint now: (busy, pages in the log, pages checkpointed)."""
        if self._pages_found > self.low_priority_pages:
            busy, pages, done = await asyncio.to_thread(self._passive)
        else:
            loop = asyncio.get_running_loop()
            busy, pages, done = await loop.run_in_executor(self._spare_time_thread(), self._passive)
        self._pages_found = pages
        if not busy and pages:
            await asyncio.to_thread(self._restart)
        return busy, pages, done

    def _spare_time_thread(self) -> ThreadPoolExecutor:
        if self._spare_time is None:
            self._spare_time = ThreadPoolExecutor(
                1, "sqlite-wal-checkpoint", initializer=_lowest_priority
            )
        return self._spare_time

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.checkpoint()
            except sqlite3.Error as exc:
                log.warning("SQLite WAL checkpoint failed: %s", exc)

    def _passive(self) -> tuple[int, int, int]:
        with self._lock:
            if self._connection is None:
                # Autocommit (no implicit transactions); used by one thread at a time, in turn.
                self._connection = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
                # Waits for nothing: a RESTART that meets a writer or a reader gives up.
                self._connection.execute("PRAGMA busy_timeout=0")
            busy, pages, done = self._connection.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
        return int(busy), int(pages), int(done)

    def _restart(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()

    def _close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def _lowest_priority() -> None:
    """Lower the calling thread to the lowest CPU priority, where the system sets it per thread."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)
