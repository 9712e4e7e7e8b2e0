"""The SQLite writer: group commit, a savepoint per transaction, nothing acknowledged early,
batches on the loop's own thread while the lock is free."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from gpubridge.db.writer import Writer

INSERT = text("INSERT INTO items (id) VALUES (:id)")


def make_db(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "writer.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
        conn.execute("INSERT INTO counter VALUES (0)")
    return path, f"sqlite+aiosqlite:///{path}"


def stored(path: Path) -> set[int]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM items")}


def insert(item: int, ran_on: list[int] | None = None):  # type: ignore[no-untyped-def]
    """A transaction that inserts ``item`` (and notes in ``ran_on`` the thread it ran on)."""

    def work(conn: Connection) -> int:
        if ran_on is not None:
            ran_on.append(threading.get_ident())
        conn.execute(INSERT, {"id": item})
        return item

    return work


@contextlib.asynccontextmanager
async def writer_beside(tmp_path: Path) -> AsyncIterator[tuple[Path, Writer, sqlite3.Connection]]:
    """A writer already connected (item 1 committed on the loop's thread) beside another
    autocommit connection to the same file; both closed on the way out."""
    path, url = make_db(tmp_path)
    writer = Writer(url)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        async with asyncio.timeout(30):
            assert await writer.run(insert(1)) == 1
            yield path, writer, other
    finally:
        other.close()
        await writer.close()


async def test_many_concurrent_transactions_all_commit_in_shared_batches(tmp_path):
    path, url = make_db(tmp_path)
    writer = Writer(url)

    def bump(conn: Connection) -> int:
        conn.execute(text("UPDATE counter SET n = n + 1"))
        return int(conn.execute(text("SELECT n FROM counter")).scalar_one())

    try:
        async with asyncio.timeout(30):
            seen = await asyncio.gather(*(writer.run(bump) for _ in range(300)))
    finally:
        await writer.close()
    # Each saw the counter after its own increment: no update lost, none seen twice.
    assert sorted(seen) == list(range(1, 301))
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT n FROM counter").fetchone() == (300,)
    assert 1 <= writer.batches < 300


async def test_a_transaction_submitted_on_the_next_turn_of_the_loop_joins_the_batch(tmp_path):
    path, url = make_db(tmp_path)
    writer = Writer(url)
    loop = asyncio.get_running_loop()
    later: list[asyncio.Task[int]] = []
    try:
        first = writer.run(insert(1))
        # Submitted from a callback of the loop's next turn, after the writer woke up.
        loop.call_soon(lambda: later.append(loop.create_task(writer.run(insert(2)))))
        async with asyncio.timeout(30):
            assert await first == 1
            assert await later[0] == 2
    finally:
        await writer.close()
    assert writer.batches == 1
    assert stored(path) == {1, 2}


async def test_a_failing_transaction_rolls_back_only_itself(tmp_path):
    path, url = make_db(tmp_path)
    writer = Writer(url)

    def half_then_fail(conn: Connection) -> None:
        conn.execute(INSERT, {"id": 100})
        raise ValueError("refused")

    def duplicate(conn: Connection) -> None:
        conn.execute(INSERT, {"id": 101})
        conn.execute(INSERT, {"id": 1})  # taken by the first transaction of the batch

    try:
        async with asyncio.timeout(30):
            outcomes = await asyncio.gather(
                writer.run(insert(1)),
                writer.run(half_then_fail),
                writer.run(insert(2)),
                writer.run(duplicate),
                writer.run(insert(3)),
                return_exceptions=True,
            )
    finally:
        await writer.close()
    assert outcomes[0] == 1 and outcomes[2] == 2 and outcomes[4] == 3
    assert isinstance(outcomes[1], ValueError)
    assert "UNIQUE" in str(outcomes[3])
    assert writer.batches == 1
    assert stored(path) == {1, 2, 3}


async def test_nothing_is_acknowledged_before_its_batch_commits(tmp_path):
    path, url = make_db(tmp_path)
    writer = Writer(url, on_loop=False)  # the loop goes on while the batch runs
    release = threading.Event()
    observed: dict[str, object] = {}

    def last(conn: Connection) -> int:
        # Still inside the batch: the first transaction's row is not visible to another
        # connection, and its caller has not been answered.
        observed["others_see"] = stored(path)
        observed["first_done"] = first.done()
        release.wait(10)
        conn.execute(INSERT, {"id": 2})
        return 2

    try:
        async with asyncio.timeout(30):
            first = asyncio.ensure_future(writer.run(insert(1)))
            second = asyncio.ensure_future(writer.run(last))
            await asyncio.sleep(0.2)
            assert not first.done() and not second.done()
            release.set()
            assert await first == 1 and await second == 2
    finally:
        release.set()
        await writer.close()
    assert observed == {"others_see": set(), "first_done": False}
    assert stored(path) == {1, 2}


async def test_a_caller_cancelled_while_its_batch_runs_hands_the_result_on(tmp_path):
    path, url = make_db(tmp_path)
    writer = Writer(url, on_loop=False)  # the loop goes on while the batch runs
    started = threading.Event()
    release = threading.Event()
    late: list[int] = []

    def slow(conn: Connection) -> int:
        started.set()
        release.wait(10)
        conn.execute(INSERT, {"id": 7})
        return 7

    try:
        async with asyncio.timeout(30):
            caller = asyncio.ensure_future(writer.run(slow, on_late=late.append))
            beside = asyncio.ensure_future(writer.run(insert(6)))
            await asyncio.to_thread(started.wait, 10)
            caller.cancel()
            skipped = asyncio.ensure_future(writer.run(insert(8), on_late=late.append))
            await asyncio.sleep(0)
            skipped.cancel()  # cancelled before its batch starts: never runs
            release.set()
            await writer.run(insert(9))
            assert await beside == 6
    finally:
        release.set()
        await writer.close()
    assert late == [7]
    assert stored(path) == {6, 7, 9}


async def test_batches_run_on_the_loops_thread_unless_told_otherwise(tmp_path):
    path, url = make_db(tmp_path)
    writer, apart = Writer(url), Writer(url, on_loop=False)
    threads: dict[int, int] = {}

    def where(item: int):  # type: ignore[no-untyped-def]
        def work(conn: Connection) -> int:
            threads[item] = threading.get_ident()
            conn.execute(INSERT, {"id": item})
            return item

        return work

    try:
        async with asyncio.timeout(30):
            assert await writer.run(where(1)) == 1
            assert await asyncio.gather(writer.run(where(2)), writer.run(where(3))) == [2, 3]
            assert await asyncio.gather(apart.run(where(4)), apart.run(where(5))) == [4, 5]
    finally:
        await writer.close()
        await apart.close()
    here = threading.get_ident()
    assert threads[1] == threads[2] == threads[3] == here
    assert threads[4] == threads[5] != here
    assert stored(path) == {1, 2, 3, 4, 5}


async def test_a_lone_transaction_waits_for_another_writer_off_the_loop(tmp_path):
    """Another connection holds the write lock: the transaction waits for it on the writer
    thread, and the loop goes on meanwhile."""
    ran_on: list[int] = []
    async with writer_beside(tmp_path) as (path, writer, other):
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO items (id) VALUES (4)")
        waiting = asyncio.ensure_future(writer.run(insert(5, ran_on)))
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not waiting.done()
        other.execute("COMMIT")
        assert await waiting == 5
        assert await writer.run(insert(6)) == 6  # back on the loop's thread
    assert ran_on and ran_on[0] != threading.get_ident()
    assert stored(path) == {1, 4, 5, 6}


async def test_a_lock_held_briefly_is_waited_for_on_the_loops_thread(tmp_path):
    """Another connection holds the write lock for a few milliseconds (a checkpoint's restart,
    say): the batch tries again on the loop's thread rather than going to the writer thread."""
    ran_on: list[int] = []
    async with writer_beside(tmp_path) as (path, writer, other):
        other.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(0.01, other.execute, "COMMIT")
        assert await writer.run(insert(5, ran_on)) == 5
    assert ran_on == [threading.get_ident()]
    assert stored(path) == {1, 5}


async def test_close_answers_what_is_queued_then_refuses_more(tmp_path):
    path, url = make_db(tmp_path)
    writer = Writer(url)
    async with asyncio.timeout(30):
        queued = [asyncio.ensure_future(writer.run(insert(i))) for i in range(5)]
        await asyncio.sleep(0)
        await writer.close()
        assert [await q for q in queued] == list(range(5))
    with pytest.raises(RuntimeError):
        await writer.run(insert(99))
    assert stored(path) == set(range(5))


CRASHING_CLIENT = textwrap.dedent(
    """
    import asyncio, os, sys
    from sqlalchemy import text
    from gpubridge.db.writer import Writer

    INSERT = text("INSERT INTO items (id) VALUES (:id)")

    def insert(item):
        def work(conn):
            conn.execute(INSERT, {"id": item})
            if item == 13:
                os._exit(3)  # the process dies in the middle of a batch
            return item
        return work

    async def main():
        writer = Writer(sys.argv[1])
        for item in range(5):
            print(await writer.run(insert(item)), flush=True)
        async def one(item):
            print(await writer.run(insert(item)), flush=True)
        await asyncio.gather(*(one(item) for item in range(10, 16)))

    asyncio.run(main())
    """
)


def test_a_crash_in_the_middle_of_a_batch_loses_nothing_acknowledged(tmp_path):
    path, url = make_db(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_CLIENT, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    acknowledged = {int(line) for line in done.stdout.split()}
    assert acknowledged == set(range(5))
    # Everything acknowledged is stored; nothing of the batch that never committed is.
    assert stored(path) == acknowledged


async def test_a_database_that_cannot_be_opened_fails_each_caller_instead_of_hanging(tmp_path):
    from gpubridge.db.writer import WriteFailed

    writer = Writer(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    try:
        async with asyncio.timeout(30):
            for _ in range(2):
                with pytest.raises(WriteFailed):
                    await writer.run(insert(1))
    finally:
        await writer.close()


async def test_the_writer_leaves_wal_checkpoints_to_their_own_task_and_waits_off_the_loop(
    tmp_path,
):
    _, url = make_db(tmp_path)
    writer = Writer(url, busy_timeout_ms=2_500)
    apart = Writer(url, busy_timeout_ms=2_500, on_loop=False)

    def pragmas(conn: Connection) -> tuple[int, int, str]:
        read = lambda name: conn.execute(text(f"PRAGMA {name}")).scalar_one()  # noqa: E731
        return read("wal_autocheckpoint"), read("busy_timeout"), read("journal_mode")

    try:
        here = await writer.run(pragmas)
        there = await apart.run(pragmas)
    finally:
        await writer.close()
        await apart.close()
    assert here == (0, 0, "wal")  # on the loop's thread, which never waits for the lock
    assert there == (0, 2_500, "wal")  # the writer thread waits for it
