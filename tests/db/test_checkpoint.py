"""The write-ahead log is checkpointed by a task of its own, never inside a commit."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from gpubridge.db import Database
from gpubridge.db.checkpoint import LOWEST_PRIORITY, WalCheckpoints
from tests.support.gateway_app import running_app, settings_for, write_catalog

ROWS = 600
BLOB = b"x" * 8000  # two pages or more per commit
PASSIVE, RESTART = "PRAGMA wal_checkpoint(PASSIVE)", "PRAGMA wal_checkpoint(RESTART)"


async def filled(path: Path) -> Database:
    """A database on ``path`` whose gateway connections committed ROWS times."""
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.begin() as conn:
        await conn.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)"))
    for _ in range(ROWS):
        async with db.begin() as conn:
            await conn.execute(text("INSERT INTO blobs (data) VALUES (:data)"), {"data": BLOB})
    return db


def rows_in_the_database_file(path: Path, tmp_path: Path) -> int:
    """The rows a copy of the database file holds without its write-ahead log."""
    copy = tmp_path / "file-only.db"
    shutil.copyfile(path, copy)
    with sqlite3.connect(copy) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE name = 'blobs'").fetchall()
        return int(conn.execute("SELECT count(*) FROM blobs").fetchone()[0]) if tables else 0


async def test_commits_never_checkpoint_and_a_checkpoint_copies_the_whole_log(tmp_path: Path):
    path = tmp_path / "gpubridge.db"
    db = await filled(path)
    checkpoints = WalCheckpoints(path)
    try:
        async with db.connect() as conn:
            assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 0
        assert rows_in_the_database_file(path, tmp_path) == 0
        busy, pages, done = await checkpoints.checkpoint()
        # SQLite's default would have checkpointed (and restarted the log) at 1,000 pages.
        assert pages > 1000
        assert (busy, done) == (0, pages)
        assert rows_in_the_database_file(path, tmp_path) == ROWS
    finally:
        await checkpoints.stop()
        await db.dispose()


async def test_the_task_checkpoints_while_the_gateway_writes(tmp_path: Path):
    path = tmp_path / "gpubridge.db"
    checkpoints = WalCheckpoints(path, every_s=0.05)
    db = await filled(path)
    try:
        checkpoints.start()
        async with asyncio.timeout(10):
            while rows_in_the_database_file(path, tmp_path) < ROWS:
                await asyncio.sleep(0.05)
    finally:
        await checkpoints.stop()
        await db.dispose()


async def test_a_server_on_a_sqlite_file_runs_the_checkpoints(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'gpubridge.db'}"
    catalog = write_catalog(tmp_path / "catalog.yaml")
    settings = settings_for(url, tmp_path, catalog, auto_migrate=True)
    async with running_app(settings) as (app, _):
        checkpoints = app.state.components.checkpoints
        assert isinstance(checkpoints, WalCheckpoints)
        assert checkpoints.path == tmp_path / "gpubridge.db"
        busy, pages, done = await checkpoints.checkpoint()
        assert (busy, done) == (0, pages)


async def test_each_checkpoint_then_restarts_the_log_without_waiting(tmp_path: Path):
    """After its PASSIVE copy a checkpoint asks for a RESTART, which leaves the log for the
    next transaction to start again from its beginning (a PASSIVE copy alone, beside a writer
    that never pauses, never lets it). The RESTART waits for no one: a writer holding the lock
    is left to finish."""
    path = tmp_path / "gpubridge.db"
    db = await filled(path)
    checkpoints = WalCheckpoints(path)
    writer = sqlite3.connect(path, isolation_level=None)
    asked: list[str] = []
    try:
        await checkpoints.checkpoint()
        assert checkpoints._connection is not None
        checkpoints._connection.set_trace_callback(asked.append)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO blobs (data) VALUES (?)", (BLOB,))
        async with asyncio.timeout(5):  # a writer holds the lock: the RESTART gives up at once
            await checkpoints.checkpoint()
        writer.execute("COMMIT")
        busy, pages, done = await checkpoints.checkpoint()
        assert (busy, done) == (0, pages) and pages > 0
        assert asked == [PASSIVE, RESTART] * 2
        assert rows_in_the_database_file(path, tmp_path) == ROWS + 1
    finally:
        writer.close()
        await checkpoints.stop()
        await db.dispose()


def own_priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(sys.platform != "linux", reason="Linux sets CPU priorities per thread")
async def test_the_copy_takes_spare_cpu_time_unless_the_log_grew_large(tmp_path: Path):
    """The PASSIVE copy runs at the lowest CPU priority and the RESTART, which holds the write
    lock, at the server's own; after a copy that found a large log the next one runs at the
    server's priority too, so a server that is never idle still keeps its log bounded."""
    path = tmp_path / "gpubridge.db"
    db = await filled(path)  # a log of more than 1,000 pages
    checkpoints = WalCheckpoints(path, low_priority_pages=1000)
    server = own_priority()
    seen: list[tuple[str, int]] = []

    async def one_more_row_then_a_checkpoint() -> int:
        async with db.begin() as conn:
            await conn.execute(text("INSERT INTO blobs (data) VALUES (:data)"), {"data": BLOB})
        busy, pages, done = await checkpoints.checkpoint()
        assert (busy, done) == (0, pages)
        return pages

    try:
        assert await one_more_row_then_a_checkpoint() > 1000
        assert checkpoints._connection is not None
        checkpoints._connection.set_trace_callback(lambda sql: seen.append((sql, own_priority())))
        assert await one_more_row_then_a_checkpoint() < 1000
        assert await one_more_row_then_a_checkpoint() < 1000
        assert seen == [
            (PASSIVE, server),
            (RESTART, server),
            (PASSIVE, LOWEST_PRIORITY),
            (RESTART, server),
        ]
        assert server < LOWEST_PRIORITY
    finally:
        await checkpoints.stop()
        await db.dispose()
