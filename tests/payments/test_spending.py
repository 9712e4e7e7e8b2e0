"""Spending per day and service from the ledger's captures, and jobs per service, on SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import update

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import jobs, ledger_entries
from gpubridge.payments import ledger
from gpubridge.payments.spending import (
    DailySpend,
    ServiceJobs,
    daily_spend_by_service,
    jobs_by_service,
)
from tests.payments.test_ledger import end_job, funded_account, hold_job

TODAY = utcnow().date()


def at_noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


async def settled(
    database,
    account_id: str,
    service: str,
    day: date,
    *,
    cost: int | None,
    hold: int = 100_000,
    execution_ms: int = 0,
) -> str:
    """A job of ``service`` held, then captured at ``cost`` (or refunded when None), both
    dated ``day``."""
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
            .values(service=service, created_at=when, execution_ms=execution_ms)
        )
        await conn.execute(
            update(ledger_entries).where(ledger_entries.c.job_id == job_id).values(created_at=when)
        )
    return job_id


async def test_captures_are_summed_per_utc_day_and_service(database) -> None:
    account = await funded_account(database, 10_000_000)
    other = await funded_account(database, 10_000_000)
    yesterday, long_ago = TODAY - timedelta(days=1), TODAY - timedelta(days=40)
    await settled(database, account, "llm-4090", TODAY, cost=3_000)
    await settled(database, account, "llm-4090", TODAY, cost=4_500)
    await settled(database, account, "embedding-l4", TODAY, cost=10_000)
    await settled(database, account, "llm-4090", yesterday, cost=1_000)
    await settled(database, account, "llm-4090", yesterday, cost=None)  # refunded: not spent
    await settled(database, account, "llm-4090", long_ago, cost=9_000)  # before the period
    await settled(database, other, "llm-4090", TODAY, cost=50_000)  # another account

    since = at_noon(TODAY - timedelta(days=29)).replace(hour=0)
    async with database.connect() as conn:
        found = await daily_spend_by_service(conn, account, since)

    assert found == [
        DailySpend(yesterday, "llm-4090", 1_000),
        DailySpend(TODAY, "embedding-l4", 10_000),
        DailySpend(TODAY, "llm-4090", 7_500),
    ]


async def test_jobs_are_counted_per_service_with_failures_and_run_time(database) -> None:
    account = await funded_account(database, 10_000_000)
    await settled(database, account, "llm-4090", TODAY, cost=3_000, execution_ms=1_200)
    await settled(database, account, "llm-4090", TODAY, cost=None)
    await settled(database, account, "whisper-l4", TODAY, cost=50_000, execution_ms=800)
    await settled(database, account, "whisper-l4", TODAY - timedelta(days=31), cost=50_000)

    since = at_noon(TODAY - timedelta(days=29)).replace(hour=0)
    async with database.connect() as conn:
        found = await jobs_by_service(conn, account, since)

    assert found == [
        ServiceJobs("llm-4090", jobs=2, completed=1, failed=1, execution_ms=1_200),
        ServiceJobs("whisper-l4", jobs=1, completed=1, failed=0, execution_ms=800),
    ]


async def test_an_account_without_jobs_has_no_rows(database) -> None:
    account = await funded_account(database, 1_000_000)
    since = at_noon(TODAY).replace(hour=0)
    async with database.connect() as conn:
        assert await daily_spend_by_service(conn, account, since) == []
        assert await jobs_by_service(conn, account, since) == []
