"""The ledger: holds, captures, refunds and limits, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import insert, select, update

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts, jobs, ledger_entries
from gpubridge.errors import InsufficientCredits, SpendingLimitExceeded
from gpubridge.payments import ledger
from gpubridge.payments.accounts import Accounts

LIMIT = 50_000_000
TODAY = utcnow().date()


async def funded_account(database, micros: int) -> str:
    accounts = Accounts(database, default_daily_limit_micros=LIMIT, cache_s=0)
    created = await accounts.register(f"{uuid.uuid4().hex[:8]}@example.com")
    async with database.begin() as conn:
        await ledger.credit(conn, created.account.id, micros, house="grants", memo="test funding")
    return created.account.id


async def hold_job(database, account_id: str, micros: int, limit: int = LIMIT) -> str:
    job_id = str(uuid.uuid4())
    async with database.begin() as conn:
        await conn.execute(
            update(accounts).where(accounts.c.id == account_id).values(daily_limit_micros=limit)
        )
        await ledger.hold(conn, account_id, micros, job_id=job_id)
        now = utcnow()
        await conn.execute(
            insert(jobs).values(
                id=job_id,
                account_id=account_id,
                service="llm-4090",
                model="m",
                input={},
                status="running",
                hold_micros=micros,
                discount_percent=0,
                created_at=now,
                updated_at=now,
            )
        )
    return job_id


async def end_job(conn, job_id: str, status: str, cost: int | None = None) -> None:
    """What the runner records beside the ledger when a job ends."""
    await conn.execute(
        update(jobs).where(jobs.c.id == job_id).values(status=status, cost_micros=cost)
    )


async def captured_job(database, account_id: str, held: int, cost: int) -> str:
    """A job that held ``held``, completed and was charged ``cost``, as the runner does it."""
    job = await hold_job(database, account_id, held)
    async with database.begin() as conn:
        await ledger.capture(
            conn, account_id, job_id=job, held_micros=held, cost_micros=cost, held_on=TODAY
        )
        await end_job(conn, job, "completed", cost=cost)
    return job


async def test_capture_spends_the_cost_and_releases_the_rest(database):
    account = await funded_account(database, 10_000)
    job = await hold_job(database, account, 4_000)
    async with database.begin() as conn:
        assert await ledger.available_balance(conn, account) == 6_000
        await ledger.capture(
            conn, account, job_id=job, held_micros=4_000, cost_micros=1_234, held_on=TODAY
        )
        await end_job(conn, job, "completed", cost=1_234)
    async with database.connect() as conn:
        assert await ledger.available_balance(conn, account) == 10_000 - 1_234
        assert await ledger.ledger_totals(conn, account) == (10_000 - 1_234, 0)
        assert await ledger.lifetime_spend(conn, account) == 1_234


async def test_refund_returns_the_whole_hold(database):
    account = await funded_account(database, 10_000)
    job = await hold_job(database, account, 4_000)
    async with database.begin() as conn:
        await ledger.refund(conn, account, job_id=job, held_micros=4_000, held_on=TODAY)
        await end_job(conn, job, "failed")
    async with database.connect() as conn:
        assert await ledger.available_balance(conn, account) == 10_000
        assert await ledger.ledger_totals(conn, account) == (10_000, 0)


async def test_a_hold_larger_than_the_balance_is_refused_and_leaves_no_entry(database):
    account = await funded_account(database, 1_000)
    with pytest.raises(InsufficientCredits) as caught:
        await hold_job(database, account, 1_001)
    assert caught.value.status == 402
    async with database.connect() as conn:
        assert await ledger.available_balance(conn, account) == 1_000
        assert await ledger.ledger_totals(conn, account) == (1_000, 0)


async def test_the_daily_limit_counts_running_holds_and_captured_costs(database):
    account = await funded_account(database, 100_000_000)
    first = await hold_job(database, account, 600_000, limit=1_000_000)
    async with database.begin() as conn:
        await ledger.capture(
            conn, account, job_id=first, held_micros=600_000, cost_micros=500_000, held_on=TODAY
        )
        await end_job(conn, first, "completed", cost=500_000)
    await hold_job(database, account, 400_000, limit=1_000_000)
    with pytest.raises(SpendingLimitExceeded):
        await hold_job(database, account, 100_001, limit=1_000_000)
    await hold_job(database, account, 100_000, limit=1_000_000)
    async with database.connect() as conn:
        assert await ledger.daily_spend(conn, account) == 1_000_000


async def test_concurrent_holds_never_overdraw(database):
    n = 10
    account = await funded_account(database, n * 1_000)
    results = await asyncio.gather(
        *(hold_job(database, account, 1_000) for _ in range(3 * n)), return_exceptions=True
    )
    accepted = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert len(accepted) == n
    assert len(refused) == 2 * n
    async with database.connect() as conn:
        assert await ledger.available_balance(conn, account) == 0
        assert await ledger.ledger_totals(conn, account) == (0, n * 1_000)


async def test_a_credit_reference_is_used_once(database):
    from sqlalchemy.exc import IntegrityError

    account = await funded_account(database, 1)
    async with database.begin() as conn:
        await ledger.credit(conn, account, 5, house="grants", kind="topup", reference="evt_1")
    with pytest.raises(IntegrityError):
        async with database.begin() as conn:
            await ledger.credit(conn, account, 5, house="grants", kind="topup", reference="evt_1")
    async with database.connect() as conn:
        assert await ledger.available_balance(conn, account) == 6


async def test_every_movement_is_a_posting_that_sums_to_zero_against_a_house(database):
    account = await funded_account(database, 10_000)
    await captured_job(database, account, 4_000, 1_000)
    async with database.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    ledger_entries.c.posting_id,
                    ledger_entries.c.house,
                    ledger_entries.c.kind,
                    ledger_entries.c.available_delta + ledger_entries.c.held_delta,
                )
            )
        ).all()
    sums: dict[str, int] = {}
    for posting, _, _, amount in rows:
        sums[posting] = sums.get(posting, 0) + int(amount)
    assert set(sums.values()) == {0}
    houses = {(house, kind, int(amount)) for _, house, kind, amount in rows if house}
    assert houses == {("grants", "grant", -10_000), ("revenue", "capture", 1_000)}
    # Time-ordered, so that each new posting goes at the end of its index.
    assert {uuid.UUID(posting).version for posting in sums} == {7}


async def test_a_job_cannot_be_captured_twice_or_captured_and_refunded(database):
    from sqlalchemy.exc import IntegrityError

    account = await funded_account(database, 10_000)
    job = await captured_job(database, account, 4_000, 4_000)
    for settle in (
        lambda conn: ledger.capture(
            conn, account, job_id=job, held_micros=4_000, cost_micros=4_000, held_on=TODAY
        ),
        lambda conn: ledger.refund(conn, account, job_id=job, held_micros=4_000, held_on=TODAY),
    ):
        with pytest.raises(IntegrityError):
            async with database.begin() as conn:
                await settle(conn)
    with pytest.raises(IntegrityError):
        async with database.begin() as conn:
            await ledger.hold(conn, account, 1_000, job_id=job)
    async with database.connect() as conn:
        assert await ledger.available_balance(conn, account) == 6_000


async def test_a_credit_needs_a_known_house_account(database):
    account = await funded_account(database, 1)
    with pytest.raises(ValueError, match="house"):
        async with database.begin() as conn:
            await ledger.credit(conn, account, 5, house="nowhere")
