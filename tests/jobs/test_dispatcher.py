"""The dispatcher stops the work of a running job that another process ended."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from sqlalchemy import insert

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts
from gpubridge.jobs import leases, store
from gpubridge.jobs.dispatcher import Dispatcher
from gpubridge.jobs.status import ACTIVE, JobStatus
from gpubridge.jobs.store import JobRecord

WATCH_S = 0.1


class Blocking:
    """A runner whose jobs run until they are cancelled."""

    def __init__(self) -> None:
        self.started: asyncio.Queue[JobRecord] = asyncio.Queue()

    async def __call__(self, job: JobRecord) -> None:
        self.started.put_nowait(job)
        await asyncio.Event().wait()


@pytest.fixture
async def running(database: Any) -> AsyncIterator[tuple[Dispatcher, Blocking]]:
    runner = Blocking()
    # Claims only when told (``notify``): a job that someone else puts back stays queued.
    dispatcher = Dispatcher(database, runner, max_concurrency=4, poll_s=60.0, watch_s=WATCH_S)
    await dispatcher.renew_lease()
    dispatcher.start()
    yield dispatcher, runner
    await dispatcher.stop()


@pytest.fixture
async def other_process(database_url: str) -> AsyncIterator[Database]:
    """The same database through another engine, as another process on the machine uses it."""
    db = Database(database_url)
    yield db
    await db.dispose()


async def queue_job(db: Database, dispatcher: Dispatcher) -> str:
    account_id = str(uuid.uuid4())
    async with db.begin() as conn:
        await conn.execute(
            insert(accounts).values(
                id=account_id, webhook_secret="s", daily_limit_micros=1, created_at=utcnow()
            )
        )
        job = await store.insert_job(
            conn,
            id=str(uuid.uuid4()),
            account_id=account_id,
            service="llm-4090",
            model="m",
            input={},
            status=JobStatus.PENDING.value,
            hold_micros=0,
        )
    dispatcher.notify()
    return job.id


async def claimed(dispatcher: Dispatcher, runner: Blocking) -> tuple[JobRecord, asyncio.Task[Any]]:
    with anyio.fail_after(5):
        job = await runner.started.get()
    task = dispatcher.task_for(job.id)
    assert task is not None
    return job, task


async def stopped(task: asyncio.Task[Any], within_s: float) -> bool:
    with anyio.fail_after(within_s):
        await asyncio.wait({task})
    return task.cancelled()


async def test_a_job_cancelled_by_another_process_stops_here_at_the_next_look(
    database: Database, running: tuple[Dispatcher, Blocking], other_process: Database
) -> None:
    dispatcher, runner = running
    await queue_job(database, dispatcher)
    job, task = await claimed(dispatcher, runner)
    async with other_process.begin() as conn:
        cancelled = await store.finish_job(conn, job, JobStatus.CANCELLED, from_statuses=ACTIVE)
    assert cancelled is not None
    assert await stopped(task, within_s=WATCH_S * 10)
    assert dispatcher.task_for(job.id) is None


async def test_a_job_put_back_by_another_process_stops_here_too(
    database: Database, running: tuple[Dispatcher, Blocking], other_process: Database
) -> None:
    dispatcher, runner = running
    await queue_job(database, dispatcher)
    job, task = await claimed(dispatcher, runner)
    async with other_process.begin() as conn:
        assert await leases.requeue(conn, job, "worker_lost")
    assert await stopped(task, within_s=WATCH_S * 20)


async def test_jobs_that_run_on_are_left_alone(
    database: Database, running: tuple[Dispatcher, Blocking], other_process: Database
) -> None:
    dispatcher, runner = running
    await queue_job(database, dispatcher)
    await queue_job(database, dispatcher)
    first, first_task = await claimed(dispatcher, runner)
    second, second_task = await claimed(dispatcher, runner)
    async with other_process.begin() as conn:
        await store.finish_job(conn, first, JobStatus.CANCELLED, from_statuses=ACTIVE)
    assert await stopped(first_task, within_s=WATCH_S * 10)
    # The look that stopped the first saw the second running for this dispatcher.
    assert not second_task.done()
    async with database.connect() as conn:
        still = await store.get_job(conn, second.id)
    assert still is not None and still.status == JobStatus.RUNNING
