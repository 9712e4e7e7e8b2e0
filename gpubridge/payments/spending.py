"""What an account spent, per day and service, read from the ledger's captures; and its jobs
per service. Both are summed by the database, so a busy account costs one grouped query each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db.tables import jobs, ledger_entries


@dataclass(frozen=True)
class DailySpend:
    day: date
    service: str
    micros: int


@dataclass(frozen=True)
class ServiceJobs:
    service: str
    jobs: int
    completed: int
    failed: int
    """Failed or cancelled (refunded in full)."""
    execution_ms: int
    """The summed run time of its jobs that report one."""


def _utc_day(conn: AsyncConnection, column: ColumnElement[datetime]) -> ColumnElement[str]:
    """The UTC calendar day of a stored time, as the database's date (``YYYY-MM-DD``)."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)  # SQLite stores UTC times as ISO text


async def daily_spend_by_service(
    conn: AsyncConnection, account_id: str, since: datetime
) -> list[DailySpend]:
    """Captured costs from ``since`` on, summed per UTC day and service (refunds and released
    holds are not spending: only captures move money to the house)."""
    day = _utc_day(conn, ledger_entries.c.created_at).label("day")
    spent = func.sum(-ledger_entries.c.held_delta).label("micros")
    query = (
        select(day, jobs.c.service, spent)
        .select_from(ledger_entries.join(jobs, jobs.c.id == ledger_entries.c.job_id))
        .where(
            ledger_entries.c.account_id == account_id,
            ledger_entries.c.kind == "capture",
            ledger_entries.c.created_at >= since,
        )
        .group_by(day, jobs.c.service)
        .order_by(day, jobs.c.service)
    )
    rows = (await conn.execute(query)).all()
    return [
        DailySpend(date.fromisoformat(str(row.day)), str(row.service), int(row.micros or 0))
        for row in rows
    ]


async def jobs_by_service(
    conn: AsyncConnection, account_id: str, since: datetime
) -> list[ServiceJobs]:
    """The account's jobs created from ``since`` on, counted per service."""
    completed = func.sum(case((jobs.c.status == "completed", 1), else_=0))
    failed = func.sum(case((jobs.c.status.in_(("failed", "cancelled")), 1), else_=0))
    query = (
        select(
            jobs.c.service,
            func.count().label("jobs"),
            completed.label("completed"),
            failed.label("failed"),
            func.coalesce(func.sum(jobs.c.execution_ms), 0).label("execution_ms"),
        )
        .where(jobs.c.account_id == account_id, jobs.c.created_at >= since)
        .group_by(jobs.c.service)
        .order_by(jobs.c.service)
    )
    rows = (await conn.execute(query)).all()
    return [
        ServiceJobs(
            str(row.service),
            int(row.jobs),
            int(row.completed or 0),
            int(row.failed or 0),
            int(row.execution_ms or 0),
        )
        for row in rows
    ]
