"""Leases: each gateway replica's heartbeat, and the running jobs whose holder has none.

A replica renews its lease every few seconds while it runs; a job it claimed stays alive as long
as the lease does, however long the job takes. When a replica dies its lease expires, and any
replica's maintenance finds the jobs it held.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import jobs, leases
from gpubridge.jobs.notifications import notifies, queued_notice
from gpubridge.jobs.status import JobStatus
from gpubridge.jobs.store import JobRecord


async def renew(
    conn: AsyncConnection, holder: str, ttl_s: float, info: dict[str, Any] | None = None
) -> None:
    """Create or extend ``holder``'s lease for ``ttl_s`` from now."""
    now = utcnow()
    values = {"expires_at": now + timedelta(seconds=ttl_s), "renewed_at": now, "info": info}
    updated = await conn.execute(update(leases).where(leases.c.holder == holder).values(values))
    if updated.rowcount == 0:
        await conn.execute(insert(leases).values(holder=holder, **values))


async def release(conn: AsyncConnection, holder: str) -> None:
    """End ``holder``'s lease (a graceful shutdown)."""
    await conn.execute(delete(leases).where(leases.c.holder == holder))


async def orphaned_jobs(conn: AsyncConnection, started_before: datetime) -> list[JobRecord]:
    """Running jobs whose holder has no live lease, started before ``started_before`` (a
    holder writes its lease before it claims, so a younger job is never taken for lost)."""
    now = utcnow()
    alive = exists().where(and_(leases.c.holder == jobs.c.claimed_by, leases.c.expires_at > now))
    started = func.coalesce(jobs.c.started_at, jobs.c.created_at)
    rows = (
        await conn.execute(
            select(jobs).where(
                jobs.c.status == JobStatus.RUNNING.value, started < started_before, ~alive
            )
        )
    ).all()
    return [JobRecord.from_row(r) for r in rows]


async def requeue(conn: AsyncConnection, job: JobRecord, reason: str) -> bool:
    """Put a running job back in the queue for any replica to claim; its progress records
    that it was requeued, so a job that takes its process down every time is requeued once.
    Replicas that listen hear that it waits (on commit)."""
    statement = (
        update(jobs)
        .where(jobs.c.id == job.id, jobs.c.status == JobStatus.RUNNING.value)
        .values(
            status=JobStatus.PENDING.value,
            claimed_by=None,
            started_at=None,
            progress={"stage": "requeued", "reason": reason},
            updated_at=utcnow(),
        )
    )
    if notifies(conn):
        return (await conn.execute(statement.returning(queued_notice()))).first() is not None
    result = await conn.execute(statement)
    return bool(result.rowcount)


def was_requeued(job: JobRecord) -> bool:
    return isinstance(job.progress, dict) and job.progress.get("stage") == "requeued"


async def live(conn: AsyncConnection) -> list[dict[str, Any]]:
    """The unexpired leases, newest first: holder, expiry and what each reported."""
    rows = (
        await conn.execute(
            select(leases).where(leases.c.expires_at > utcnow()).order_by(leases.c.renewed_at)
        )
    ).all()
    return [dict(r._mapping) for r in rows]


async def purge_expired(conn: AsyncConnection, before: datetime) -> None:
    """Forget leases that expired before ``before`` (their jobs were dealt with)."""
    await conn.execute(delete(leases).where(leases.c.expires_at < before))
