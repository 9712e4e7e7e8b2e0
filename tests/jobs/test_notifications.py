"""Job notices on PostgreSQL: sent by the transaction that queues or ends a job, heard on
commit by every replica's listener, which survives losing its connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy import insert, text

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts
from gpubridge.jobs import leases, store
from gpubridge.jobs.notifications import JobListener
from gpubridge.jobs.status import ACTIVE, JobStatus
from gpubridge.jobs.store import JobRecord

pytestmark = pytest.mark.postgres


class Heard:
    """A listener's callbacks, recorded in order."""

    def __init__(self) -> None:
        self.notices: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.reconnects = 0

    def status(self, job_id: str, status: JobStatus) -> None:
        self.notices.put_nowait((job_id, status.value))

    def queued(self, job_id: str) -> None:
        self.notices.put_nowait((job_id, "queued"))

    def reconnected(self) -> None:
        self.reconnects += 1

    async def next(self) -> tuple[str, str]:
        with anyio.fail_after(5):
            return await self.notices.get()

    def listener(self, db: Database, **kwargs: Any) -> JobListener:
        return JobListener.for_database(
            db,
            on_status=self.status,
            on_queued=self.queued,
            on_reconnect=self.reconnected,
            **kwargs,
        )


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Database]:
    db = Database(postgres_url)
    await db.drop_all()
    await db.create_all()
    yield db
    await db.dispose()


@pytest.fixture
async def heard(pg: Database) -> AsyncIterator[Heard]:
    heard = Heard()
    listener = heard.listener(pg)
    await listener.start()
    assert listener.listening
    yield heard
    await listener.stop()


async def new_account(db: Database) -> str:
    account_id = str(uuid.uuid4())
    async with db.begin() as conn:
        await conn.execute(
            insert(accounts).values(
                id=account_id, webhook_secret="s", daily_limit_micros=1, created_at=utcnow()
            )
        )
    return account_id


async def add_job(conn: Any, account_id: str, status: JobStatus) -> JobRecord:
    return await store.insert_job(
        conn,
        id=str(uuid.uuid4()),
        account_id=account_id,
        service="llm-4090",
        model="m",
        input={},
        status=status.value,
        claimed_by="replica" if status == JobStatus.RUNNING else None,
        hold_micros=0,
    )


async def test_a_queued_job_is_heard_only_once_its_transaction_commits(
    pg: Database, heard: Heard
) -> None:
    account_id = await new_account(pg)
    async with pg.begin() as slow:
        first = await add_job(slow, account_id, JobStatus.PENDING)
        # A second transaction commits while the first is still open: its notice is the
        # first one heard, so the first was not sent before its commit.
        async with pg.begin() as quick:
            second = await add_job(quick, account_id, JobStatus.PENDING)
        assert await heard.next() == (second.id, "queued")
    assert await heard.next() == (first.id, "queued")


async def test_a_job_that_ends_is_heard_with_its_new_status(pg: Database, heard: Heard) -> None:
    account_id = await new_account(pg)
    async with pg.begin() as conn:
        running = await add_job(conn, account_id, JobStatus.RUNNING)
        pending = await add_job(conn, account_id, JobStatus.PENDING)
    assert await heard.next() == (pending.id, "queued")
    async with pg.begin() as conn:
        await store.finish_job(conn, running, JobStatus.COMPLETED, cost_micros=0)
        await store.finish_job(conn, pending, JobStatus.CANCELLED, from_statuses=ACTIVE)
    assert await heard.next() == (running.id, "completed")
    assert await heard.next() == (pending.id, "cancelled")


async def test_nothing_is_heard_of_a_change_rolled_back_or_refused_by_its_guard(
    pg: Database, heard: Heard
) -> None:
    account_id = await new_account(pg)
    async with pg.begin() as conn:
        job = await add_job(conn, account_id, JobStatus.RUNNING)
        await store.finish_job(conn, job, JobStatus.FAILED, error={"code": "x"})
    assert await heard.next() == (job.id, "failed")
    with pytest.raises(RuntimeError):
        async with pg.begin() as conn:
            await add_job(conn, account_id, JobStatus.PENDING)
            raise RuntimeError("roll back")
    async with pg.begin() as conn:
        # Already failed: the guarded finish changes nothing and announces nothing.
        assert await store.finish_job(conn, job, JobStatus.COMPLETED) is None
        marker = await add_job(conn, account_id, JobStatus.PENDING)
    assert await heard.next() == (marker.id, "queued")


async def test_a_job_put_back_in_the_queue_is_heard_as_queued(pg: Database, heard: Heard) -> None:
    account_id = await new_account(pg)
    async with pg.begin() as conn:
        job = await add_job(conn, account_id, JobStatus.RUNNING)
        assert await leases.requeue(conn, job, "worker_lost")
        assert not await leases.requeue(conn, job, "worker_lost")
    assert await heard.next() == (job.id, "queued")


async def test_the_listener_reconnects_after_its_connection_is_killed(pg: Database) -> None:
    heard = Heard()
    listener = heard.listener(pg, backoff_s=(0.01, 0.1))
    await listener.start()
    try:
        killed = listener.backend_pid
        async with pg.begin() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed})
        with anyio.fail_after(10):
            await listener.wait_connected(1)
        assert listener.backend_pid not in (None, killed)
        assert heard.reconnects == 1  # so that what was missed meanwhile is caught up
        async with pg.begin() as conn:
            job = await add_job(conn, await new_account(pg), JobStatus.PENDING)
        assert await heard.next() == (job.id, "queued")
    finally:
        await listener.stop()


async def test_the_listener_keeps_trying_until_it_can_listen(pg: Database) -> None:
    heard = Heard()
    real = heard.listener(pg)
    attempts: list[str] = []

    async def connect() -> asyncpg.Connection:
        if len(attempts) < 2:
            attempts.append("refused")
            raise ConnectionRefusedError("not yet")
        conn = await real._connect()
        if len(attempts) < 4:
            attempts.append("dropped")
            conn.terminate()  # connected, but gone before it could listen
        else:
            attempts.append("listening")
        return conn

    listener = JobListener(
        connect,
        on_status=heard.status,
        on_queued=heard.queued,
        on_reconnect=heard.reconnected,
        backoff_s=(0.01, 0.05),
    )
    with anyio.fail_after(10):
        await listener.start()
    try:
        assert listener.listening
        assert attempts == ["refused", "refused", "dropped", "dropped", "listening"]
        assert heard.reconnects == 0  # the first connection that listened: nothing was missed
        async with pg.begin() as conn:
            job = await add_job(conn, await new_account(pg), JobStatus.PENDING)
        assert await heard.next() == (job.id, "queued")
    finally:
        await listener.stop()
