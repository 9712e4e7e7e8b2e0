"""Leases: a replica's heartbeat keeps its running jobs alive however long they run; once it
lapses, its jobs are found, requeued once, and forgotten with the lease."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import jobs
from gpubridge.jobs import leases, store
from gpubridge.jobs.status import JobStatus
from tests.jobs.test_store import queue


async def running_job(db: Any, holder: str, started_ago_s: float) -> str:
    (job_id,) = await queue(db, ["llm-4090"])
    started = utcnow() - timedelta(seconds=started_ago_s)
    async with db.begin() as conn:
        await conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(status=JobStatus.RUNNING.value, claimed_by=holder, started_at=started)
        )
    return job_id


async def orphans(db: Any, older_than_s: float = 30) -> list[str]:
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    async with db.connect() as conn:
        return [job.id for job in await leases.orphaned_jobs(conn, started_before=cutoff)]


async def test_a_job_started_hours_ago_lives_while_its_holder_renews_its_lease(database) -> None:
    job_id = await running_job(database, "gateway-a", started_ago_s=6 * 3600)
    async with database.begin() as conn:
        await leases.renew(conn, "gateway-a", ttl_s=30, info={"workers": []})
        await leases.renew(conn, "gateway-a", ttl_s=30, info={"workers": [{"name": "w"}]})
    assert await orphans(database) == []
    async with database.connect() as conn:
        (lease,) = await leases.live(conn)
    assert lease["holder"] == "gateway-a" and lease["info"] == {"workers": [{"name": "w"}]}
    async with database.begin() as conn:
        await leases.renew(conn, "gateway-a", ttl_s=-1)
    assert await orphans(database) == [job_id]


async def test_a_job_whose_holder_never_held_a_lease_is_an_orphan_once_old_enough(
    database,
) -> None:
    young = await running_job(database, "gateway-gone", started_ago_s=1)
    old = await running_job(database, "gateway-gone", started_ago_s=120)
    assert await orphans(database) == [old]
    assert young not in await orphans(database)


async def test_a_released_lease_orphans_its_jobs_at_once(database) -> None:
    job_id = await running_job(database, "gateway-a", started_ago_s=60)
    async with database.begin() as conn:
        await leases.renew(conn, "gateway-a", ttl_s=30)
    assert await orphans(database) == []
    async with database.begin() as conn:
        await leases.release(conn, "gateway-a")
    assert await orphans(database) == [job_id]


async def test_requeueing_puts_a_running_job_back_in_the_queue_marked_requeued(database) -> None:
    job_id = await running_job(database, "gateway-a", started_ago_s=60)
    async with database.connect() as conn:
        job = await store.get_job(conn, job_id)
    assert job is not None and not leases.was_requeued(job)
    async with database.begin() as conn:
        assert await leases.requeue(conn, job, "worker_lost")
        assert not await leases.requeue(conn, job, "worker_lost")  # no longer running
        again = await store.get_job(conn, job_id)
    assert again is not None
    assert again.status == JobStatus.PENDING and again.started_at is None
    assert leases.was_requeued(again)


async def test_expired_leases_are_purged_and_live_ones_kept(database) -> None:
    async with database.begin() as conn:
        await leases.renew(conn, "gateway-old", ttl_s=-3600)
        await leases.renew(conn, "gateway-new", ttl_s=30)
        await leases.purge_expired(conn, before=utcnow() - timedelta(seconds=60))
    async with database.connect() as conn:
        assert [lease["holder"] for lease in await leases.live(conn)] == ["gateway-new"]
