"""The job store: rows of the jobs table and the statements that move them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db.engine import as_utc, utcnow
from gpubridge.db.tables import jobs, webhook_attempts
from gpubridge.jobs.notifications import notifies, queued_notice, status_notice, status_payload
from gpubridge.jobs.status import ACTIVE, JobStatus


@dataclass(frozen=True)
class JobRecord:
    id: str
    account_id: str
    service: str
    model: str
    input: dict[str, Any]
    status: JobStatus
    priority: str | None
    webhook_url: str | None
    idempotency_key: str | None
    request_hash: str | None
    hold_micros: int
    cost_micros: int | None
    discount_percent: int
    backend: str | None
    output: dict[str, Any] | None
    error: dict[str, Any] | None
    usage: dict[str, Any] | None
    progress: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    execution_ms: int | None
    expired: bool

    @classmethod
    def from_row(cls, row: Row[Any]) -> JobRecord:
        return cls.from_mapping(row._mapping)

    @classmethod
    def from_mapping(cls, m: Mapping[Any, Any]) -> JobRecord:
        return cls(
            id=m["id"],
            account_id=m["account_id"],
            service=m["service"],
            model=m["model"],
            input=m["input"],
            status=JobStatus(m["status"]),
            priority=m["priority"],
            webhook_url=m["webhook_url"],
            idempotency_key=m["idempotency_key"],
            request_hash=m["request_hash"],
            hold_micros=int(m["hold_micros"]),
            cost_micros=None if m["cost_micros"] is None else int(m["cost_micros"]),
            discount_percent=int(m["discount_percent"]),
            backend=m["backend"],
            output=m["output"],
            error=m["error"],
            usage=m["usage"],
            progress=m["progress"],
            created_at=as_utc(m["created_at"]) or utcnow(),
            started_at=as_utc(m["started_at"]),
            completed_at=as_utc(m["completed_at"]),
            execution_ms=m["execution_ms"],
            expired=bool(m["expired"]),
        )


INSERT_JOB = insert(jobs)
"""Inserts a job row from ``new_job``'s values, returning nothing."""
_INSERT_QUEUED_JOB = insert(jobs).returning(queued_notice())


async def insert_job(conn: AsyncConnection, **values: Any) -> JobRecord:
    """Insert a job row; returns it as stored, without reading it back. A pending job is
    announced to the replicas that listen (on commit), so an idle one claims it at once."""
    values, record = new_job(**values)
    queued = values.get("status") == JobStatus.PENDING and notifies(conn)
    await conn.execute(_INSERT_QUEUED_JOB if queued else INSERT_JOB, values)
    return record


NEW_JOB_ROW: dict[str, Any] = {column.name: None for column in jobs.c} | {
    "expired": 0,
    "discount_percent": 0,
}
"""A new job's columns before its own values: what the table's defaults store."""


def new_job(**values: Any) -> tuple[dict[str, Any], JobRecord]:
    """A new job's column values (times filled in) and its record as it will be stored."""
    now = values.setdefault("created_at", utcnow())
    values.setdefault("updated_at", now)
    if values.get("status") == JobStatus.RUNNING:
        values.setdefault("started_at", now)
    row = {**NEW_JOB_ROW, **values}
    return values, JobRecord.from_mapping(row)


async def get_job(conn: AsyncConnection, job_id: str) -> JobRecord | None:
    row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
    return JobRecord.from_row(row) if row else None


async def find_by_idempotency_key(
    conn: AsyncConnection, account_id: str, key: str
) -> JobRecord | None:
    row = (
        await conn.execute(
            select(jobs).where(jobs.c.account_id == account_id, jobs.c.idempotency_key == key)
        )
    ).first()
    return JobRecord.from_row(row) if row else None


async def claim_pending(
    conn: AsyncConnection,
    worker_id: str,
    limit: int,
    *,
    skip_locked: bool,
    per_service: Mapping[str, int] | None = None,
) -> list[JobRecord]:
    """Claim up to ``limit`` pending jobs for this worker, oldest first; with ``per_service``,
    only jobs of those services and at most that many of each (what this worker can run now).

    On PostgreSQL the rows are locked with ``FOR UPDATE SKIP LOCKED`` so that several gateway
    replicas each claim a job exactly once; the guarded UPDATE makes that hold on any database.
    """
    query = (
        select(jobs.c.id, jobs.c.service)
        .where(jobs.c.status == JobStatus.PENDING.value)
        .order_by(jobs.c.created_at)
        .limit(limit)
    )
    if per_service is not None:
        query = query.where(jobs.c.service.in_([k for k, n in per_service.items() if n > 0]))
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    ids: list[str] = []
    taken: dict[str, int] = {}
    for job_id, service in (await conn.execute(query)).all():
        if per_service is not None and taken.get(service, 0) >= per_service.get(service, 0):
            continue
        taken[service] = taken.get(service, 0) + 1
        ids.append(job_id)
    claimed: list[JobRecord] = []
    now = utcnow()
    for job_id in ids:
        result = await conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == JobStatus.PENDING.value)
            .values(
                status=JobStatus.RUNNING.value, claimed_by=worker_id, started_at=now, updated_at=now
            )
            .returning(*jobs.c)
        )
        row = result.first()
        if row is not None:
            claimed.append(JobRecord.from_row(row))
    return claimed


_FINISHED_COLUMNS = (
    "status",
    "output",
    "error",
    "usage",
    "cost_micros",
    "backend",
    "completed_at",
    "updated_at",
    "execution_ms",
)
# Built once (its compiled form and cache key are reused): the statement that ends every job
# that ran. Bind names carry a prefix because SET columns reserve their own names. Nothing is
# read back: the caller holds the job, and the finished record is that plus what was set.
FINISH_RUNNING = (
    update(jobs)
    .where(jobs.c.id == bindparam("job"), jobs.c.status == JobStatus.RUNNING.value)
    .values({name: bindparam(f"new_{name}") for name in _FINISHED_COLUMNS})
)
_FINISH_RUNNING_NOTIFIED = FINISH_RUNNING.returning(status_notice())


def finished_values(
    job: JobRecord,
    status: JobStatus,
    *,
    output: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    cost_micros: int = 0,
    backend: str | None = None,
) -> dict[str, Any]:
    """The columns that end ``job`` now with ``status`` (``FINISH_RUNNING`` binds them with
    the ``new_`` prefix)."""
    now = utcnow()
    started = job.started_at
    return {
        "status": status.value,
        "output": output,
        "error": error,
        "usage": usage,
        "cost_micros": cost_micros,
        "backend": backend or job.backend,
        "completed_at": now,
        "updated_at": now,
        "execution_ms": int((now - started).total_seconds() * 1000) if started else None,
    }


def finished_record(job: JobRecord, values: Mapping[str, Any]) -> JobRecord:
    """``job`` as ``finished_values`` leave it."""
    return replace(
        job,
        status=JobStatus(values["status"]),
        output=values["output"],
        error=values["error"],
        usage=values["usage"],
        cost_micros=values["cost_micros"],
        backend=values["backend"],
        completed_at=values["completed_at"],
        execution_ms=values["execution_ms"],
    )


async def finish_job(
    conn: AsyncConnection,
    job: JobRecord,
    status: JobStatus,
    *,
    output: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    cost_micros: int = 0,
    backend: str | None = None,
    from_statuses: tuple[str, ...] = (JobStatus.RUNNING.value,),
) -> JobRecord | None:
    """Move a job to a terminal status if it is still in ``from_statuses``, in one guarded
    statement; None when someone else finished or cancelled it first. The same statement
    announces the end to the replicas that listen (delivered on commit)."""
    values = finished_values(
        job,
        status,
        output=output,
        error=error,
        usage=usage,
        cost_micros=cost_micros,
        backend=backend,
    )
    notified = notifies(conn)
    params: dict[str, Any] = {"notice": status_payload(job.id, status)} if notified else {}
    if from_statuses == (JobStatus.RUNNING.value,):
        params.update({f"new_{name}": value for name, value in values.items()})
        params["job"] = job.id
        if notified:
            done = (await conn.execute(_FINISH_RUNNING_NOTIFIED, params)).first() is not None
        else:
            done = (await conn.execute(FINISH_RUNNING, params)).rowcount == 1
        return finished_record(job, values) if done else None
    statement = (
        update(jobs)
        .where(jobs.c.id == job.id, jobs.c.status.in_(from_statuses))
        .values(**values)
        .returning(*jobs.c)
    )
    if notified:
        statement = statement.returning(status_notice())
    row = (await conn.execute(statement, params)).first()
    return JobRecord.from_row(row) if row else None


async def ended_elsewhere(
    conn: AsyncConnection, job_ids: list[str], holder: str
) -> dict[str, JobStatus]:
    """Of the jobs ``holder`` runs, those no longer running for it (cancelled, finished or
    put back by someone else), with their status."""
    rows = await conn.execute(
        select(jobs.c.id, jobs.c.status).where(
            jobs.c.id.in_(job_ids),
            or_(jobs.c.status != JobStatus.RUNNING.value, jobs.c.claimed_by != holder),
        )
    )
    return {job_id: JobStatus(status) for job_id, status in rows.all()}


async def set_progress(conn: AsyncConnection, job_id: str, progress: dict[str, Any]) -> None:
    await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.in_(ACTIVE))
        .values(progress=progress, updated_at=utcnow())
    )


async def list_jobs(
    conn: AsyncConnection, account_id: str, limit: int, offset: int
) -> tuple[list[JobRecord], int]:
    rows = (
        await conn.execute(
            select(jobs)
            .where(jobs.c.account_id == account_id)
            .order_by(jobs.c.created_at.desc(), jobs.c.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    total = await conn.scalar(
        select(func.count()).select_from(jobs).where(jobs.c.account_id == account_id)
    )
    return [JobRecord.from_row(r) for r in rows], int(total or 0)


async def purge_expired_outputs(conn: AsyncConnection, ttl_s: int) -> int:
    """Drop outputs of jobs finished more than ``ttl_s`` ago; returns how many."""
    cutoff = utcnow() - timedelta(seconds=ttl_s)
    result = await conn.execute(
        update(jobs)
        .where(and_(jobs.c.completed_at < cutoff, jobs.c.expired == 0))
        .values(output=None, expired=1)
    )
    return int(result.rowcount or 0)


async def record_webhook_attempt(conn: AsyncConnection, **values: Any) -> None:
    values.setdefault("created_at", utcnow())
    await conn.execute(insert(webhook_attempts).values(**values))


async def webhook_attempts_for(conn: AsyncConnection, job_id: str) -> list[dict[str, Any]]:
    rows = (
        await conn.execute(
            select(webhook_attempts)
            .where(webhook_attempts.c.job_id == job_id)
            .order_by(webhook_attempts.c.id)
        )
    ).all()
    return [dict(r._mapping) for r in rows]
