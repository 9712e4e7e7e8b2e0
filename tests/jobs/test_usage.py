"""An account's jobs per day and service with their cost, on SQLite and PostgreSQL; the cost
is what the ledger captured."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select, update

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import jobs, ledger_entries
from gpubridge.jobs.usage import DayUsage, usage_by_day
from gpubridge.payments import ledger
from tests.payments.test_ledger import end_job, funded_account, hold_job

TODAY = utcnow().date()


def at_noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def start_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def settled(
    database,
    account_id: str,
    service: str,
    day: date,
    *,
    cost: int | None,
    hold: int = 100_000,
    execution_ms: int | None = None,
) -> str:
    """A job of ``service`` held, then captured at ``cost`` (or refunded when None), as the
    runner records it, dated ``day``."""
    job_id = await hold_job(database, account_id, hold)
    async with database.begin() as conn:
        if cost is None:
            await ledger.refund(conn, account_id, job_id=job_id, held_micros=hold, held_on=TODAY)
            await end_job(conn, job_id, "failed")
        else:
            await ledger.capture(
                conn, account_id, job_id=job_id, held_micros=hold, cost_micros=cost, held_on=TODAY
            )
            await end_job(conn, job_id, "completed", cost)
        when = at_noon(day)
        await conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(service=service, created_at=when, completed_at=when, execution_ms=execution_ms)
        )
        await conn.execute(
            update(ledger_entries).where(ledger_entries.c.job_id == job_id).values(created_at=when)
        )
    return job_id


async def captured(database, account_id: str) -> int:
    """What the ledger captured from the account (its side of the capture postings)."""
    async with database.connect() as conn:
        value = await conn.scalar(
            select(func.coalesce(func.sum(-ledger_entries.c.held_delta), 0)).where(
                ledger_entries.c.account_id == account_id, ledger_entries.c.kind == "capture"
            )
        )
    return int(value)


async def test_jobs_are_summed_per_utc_day_and_service_with_the_ledgers_cost(database) -> None:
    account = await funded_account(database, 10_000_000)
    other = await funded_account(database, 10_000_000)
    yesterday, long_ago = TODAY - timedelta(days=1), TODAY - timedelta(days=40)
    await settled(database, account, "llm-4090", TODAY, cost=3_000, execution_ms=1_200)
    await settled(database, account, "llm-4090", TODAY, cost=4_500, execution_ms=300)
    await settled(database, account, "embedding-l4", TODAY, cost=10_000)
    await settled(database, account, "llm-4090", yesterday, cost=1_000)
    await settled(database, account, "llm-4090", yesterday, cost=None)  # refunded: not spent
    await settled(database, other, "llm-4090", TODAY, cost=50_000)  # another account

    async with database.connect() as conn:
        found = await usage_by_day(conn, account, start_of(TODAY - timedelta(days=29)))

    assert found == [
        DayUsage(yesterday, "llm-4090", 2, 1, 1, 1_000, 0),
        DayUsage(TODAY, "embedding-l4", 1, 1, 0, 10_000, 0),
        DayUsage(TODAY, "llm-4090", 2, 2, 0, 7_500, 1_500),
    ]
    assert sum(row.spent_micros for row in found) == await captured(database, account)

    await settled(database, account, "llm-4090", long_ago, cost=9_000)  # before the period
    async with database.connect() as conn:
        assert await usage_by_day(conn, account, start_of(TODAY - timedelta(days=29))) == found


async def test_a_running_job_counts_on_the_day_it_was_created_and_costs_nothing_yet(
    database,
) -> None:
    account = await funded_account(database, 10_000_000)
    await hold_job(database, account, 50_000)
    async with database.connect() as conn:
        found = await usage_by_day(conn, account, start_of(TODAY))
    assert found == [DayUsage(TODAY, "llm-4090", 1, 0, 0, 0, 0)]


async def test_an_account_without_jobs_has_no_rows(database) -> None:
    account = await funded_account(database, 1_000_000)
    async with database.connect() as conn:
        assert await usage_by_day(conn, account, start_of(TODAY)) == []
