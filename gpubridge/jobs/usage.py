"""An account's jobs per day and service, with what they cost: one grouped query over the
jobs table (on its account and creation-time index), so a busy account's report stays cheap.

A job's ``cost_micros`` is written in the same transaction as the ledger's capture of it, and
only completed jobs are captured, so the cost summed here is the money the ledger took; a
failed or cancelled job was refunded in full and costs nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db.tables import jobs


@dataclass(frozen=True)
class DayUsage:
    day: date
    """The UTC day the job ended (or was created, while it runs)."""
    service: str
    jobs: int
    completed: int
    failed: int
    """Failed or cancelled (refunded in full)."""
    spent_micros: int
    execution_ms: int
    """The summed run time of the jobs that report one."""


def _utc_day(conn: AsyncConnection, column: ColumnElement[datetime]) -> ColumnElement[str]:
    """The UTC calendar day of a stored time, as text (``YYYY-MM-DD``)."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)  # SQLite stores UTC times as ISO text


async def usage_by_day(conn: AsyncConnection, account_id: str, since: datetime) -> list[DayUsage]:
    """The account's jobs created from ``since`` on, per UTC day and service."""
    day = _utc_day(conn, func.coalesce(jobs.c.completed_at, jobs.c.created_at)).label("day")
    completed = jobs.c.status == "completed"
    query = (
        select(
            day,
            jobs.c.service,
            func.count().label("jobs"),
            func.sum(case((completed, 1), else_=0)).label("completed"),
            func.sum(case((jobs.c.status.in_(("failed", "cancelled")), 1), else_=0)).label(
                "failed"
            ),
            func.sum(case((completed, func.coalesce(jobs.c.cost_micros, 0)), else_=0)).label(
                "spent"
            ),
            func.coalesce(func.sum(jobs.c.execution_ms), 0).label("execution_ms"),
        )
        .where(jobs.c.account_id == account_id, jobs.c.created_at >= since)
        .group_by(day, jobs.c.service)
        .order_by(day, jobs.c.service)
    )
    rows = (await conn.execute(query)).all()
    return [
        DayUsage(
            day=date.fromisoformat(str(row.day)),
            service=str(row.service),
            jobs=int(row.jobs),
            completed=int(row.completed or 0),
            failed=int(row.failed or 0),
            spent_micros=int(row.spent or 0),
            execution_ms=int(row.execution_ms or 0),
        )
        for row in rows
    ]
