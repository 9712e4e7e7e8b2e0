"""The money path's two transactions (admit, settle) on SQLite (the writer) and PostgreSQL (one
statement each): the same money, the same rows as the ledger and store functions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.exc import IntegrityError

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts, ledger_entries
from gpubridge.errors import InsufficientCredits, SpendingLimitExceeded
from gpubridge.gateway.money_path import MoneyPath
from gpubridge.jobs import store
from gpubridge.jobs.status import JobStatus
from gpubridge.payments import ledger
from gpubridge.payments.accounts import Accounts

LIMIT = 50_000_000


@pytest.fixture
async def money(database) -> AsyncIterator[MoneyPath]:
    path = MoneyPath(database)
    yield path
    await path.close()


async def funded(database, micros: int) -> str:
    made = Accounts(database, default_daily_limit_micros=LIMIT, cache_s=0)
    created = await made.register(f"{uuid.uuid4().hex[:8]}@example.com")
    async with database.begin() as conn:
        await ledger.credit(conn, created.account.id, micros, house="grants", memo="funding")
    return created.account.id


async def balance(database, account: str) -> int:
    async with database.connect() as conn:
        return await ledger.available_balance(conn, account)


async def admit(money: MoneyPath, account: str, micros: int, **job):  # type: ignore[no-untyped-def]
    values = {
        "id": str(uuid.uuid4()),
        "account_id": account,
        "service": "llm-4090",
        "model": "m",
        "input": {"prompt": "hi", "max_tokens": 4},
        "status": JobStatus.RUNNING.value,
        "claimed_by": "here",
        "hold_micros": micros,
        "discount_percent": 0,
        **job,
    }
    return await money.admit(micros, utcnow().date(), **values)


async def test_admitting_holds_the_ceiling_and_stores_the_job_as_returned(database, money):
    account = await funded(database, 10_000)
    job = await admit(money, account, 4_000, idempotency_key="k1", request_hash="h")
    assert await balance(database, account) == 6_000
    async with database.connect() as conn:
        stored = await store.get_job(conn, job.id)
        assert await ledger.ledger_totals(conn, account) == (6_000, 4_000)
    assert stored == job


async def test_a_refused_hold_stores_nothing(database, money):
    account = await funded(database, 1_000)
    with pytest.raises(InsufficientCredits):
        await admit(money, account, 4_000)
    async with database.begin() as conn:
        await conn.execute(
            update(accounts).where(accounts.c.id == account).values(daily_limit_micros=500)
        )
    with pytest.raises(SpendingLimitExceeded):
        await admit(money, account, 800)
    assert await balance(database, account) == 1_000
    async with database.connect() as conn:
        assert (await store.list_jobs(conn, account, 10, 0))[1] == 0
        assert await ledger.ledger_totals(conn, account) == (1_000, 0)


async def test_a_reused_idempotency_key_fails_and_holds_nothing_more(database, money):
    account = await funded(database, 10_000)
    await admit(money, account, 1_000, idempotency_key="same")
    with pytest.raises(IntegrityError):
        await admit(money, account, 1_000, idempotency_key="same")
    assert await balance(database, account) == 9_000


async def test_concurrent_admissions_take_exactly_what_the_balance_covers(database, money):
    account = await funded(database, 5 * 1_000)

    async def one() -> bool:
        try:
            await admit(money, account, 1_000)
        except InsufficientCredits:
            return False
        return True

    async with asyncio.timeout(60):
        outcomes = await asyncio.gather(*(one() for _ in range(15)))
    assert outcomes.count(True) == 5
    assert await balance(database, account) == 0


async def test_settling_a_completed_job_captures_its_cost_and_releases_the_rest(database, money):
    account = await funded(database, 10_000)
    job = await admit(money, account, 4_000)
    settled = await money.settle(
        job,
        JobStatus.COMPLETED,
        output={"text": "hello"},
        usage={"output_tokens": 2},
        cost_micros=1_500,
        backend="remote-1",
    )
    assert settled.job is not None and not settled.top_up
    async with database.connect() as conn:
        stored = await store.get_job(conn, job.id)
        assert await ledger.lifetime_spend(conn, account) == 1_500
        assert await ledger.ledger_totals(conn, account) == (8_500, 0)
    assert stored == settled.job
    assert stored.status == JobStatus.COMPLETED and stored.cost_micros == 1_500
    assert await balance(database, account) == 8_500


async def test_settling_a_failed_job_refunds_its_whole_hold(database, money):
    account = await funded(database, 10_000)
    job = await admit(money, account, 4_000)
    error = {"code": "backend_error", "message": "down"}
    settled = await money.settle(job, JobStatus.FAILED, error=error, memo="backend_error")
    assert settled.job is not None and settled.job.error == error
    assert await balance(database, account) == 10_000
    async with database.connect() as conn:
        memo = await conn.scalar(
            select(ledger_entries.c.memo).where(
                ledger_entries.c.job_id == job.id, ledger_entries.c.kind == "refund"
            )
        )
        assert await ledger.lifetime_spend(conn, account) == 0
    assert memo == "backend_error"


async def test_a_job_no_longer_running_is_neither_charged_nor_refunded_twice(database, money):
    account = await funded(database, 10_000)
    job = await admit(money, account, 4_000)
    first, second = await asyncio.gather(
        money.settle(job, JobStatus.COMPLETED, cost_micros=4_000),
        money.settle(job, JobStatus.FAILED, error={"code": "x"}),
    )
    assert [first.job is None, second.job is None].count(True) == 1
    expected = 6_000 if first.job is not None else 10_000
    assert await balance(database, account) == expected


async def test_a_capture_below_the_threshold_claims_one_auto_top_up(database, money):
    account = await funded(database, 10_000)
    async with database.begin() as conn:
        await conn.execute(
            update(accounts)
            .where(accounts.c.id == account)
            .values(auto_topup_enabled=1, auto_topup_threshold_micros=5_000, auto_topup_armed=1)
        )
    settled = []
    for _ in range(3):
        job = await admit(money, account, 3_000)
        settled.append(
            await money.settle(job, JobStatus.COMPLETED, cost_micros=3_000, auto_topup=True)
        )
    # 7,000 then 4,000 (crossing: claimed once) then 1,000 (already claimed).
    assert [s.top_up for s in settled] == [False, True, False]


@pytest.mark.postgres
async def test_on_postgresql_each_transaction_is_one_statement_sent_through_asyncpg(
    postgres, monkeypatch
):
    import asyncpg

    database = postgres
    money = MoneyPath(database)
    account = await funded(database, 10_000)
    engine: list[str] = []
    direct: list[str] = []

    def count(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        engine.append(statement)

    fetchrow = asyncpg.Connection.fetchrow

    async def sent(self, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        direct.append(query)
        return await fetchrow(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "fetchrow", sent)
    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        job = await admit(money, account, 4_000)
        admitted = list(direct)
        await money.settle(job, JobStatus.COMPLETED, cost_micros=1_000)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
        await money.close()
    assert engine == []
    assert len(admitted) == 1 and admitted[0].startswith("WITH held AS")
    assert len(direct) == 2 and direct[1].startswith("WITH acct AS")
    assert await balance(database, account) == 9_000


async def _rows(database, job_id: str) -> list[list[dict[str, Any]]]:
    """The job and its ledger entries (the house's too), less what differs by construction
    (ids, the account, the time an entry was made)."""
    from gpubridge.db.tables import jobs

    async with database.connect() as conn:
        made = [
            [
                row._asdict()
                for row in await conn.execute(select(table).where(where).order_by(order))
            ]
            for table, where, order in (
                (jobs, jobs.c.id == job_id, jobs.c.id),
                (ledger_entries, ledger_entries.c.job_id == job_id, ledger_entries.c.id),
            )
        ]
    drop = {"id", "account_id", "job_id", "posting_id", "reference", "created_at"}
    return [[{k: v for k, v in row.items() if k not in drop} for row in rows] for rows in made]


@pytest.mark.postgres
@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED])
async def test_the_statements_through_asyncpg_write_what_the_engine_writes(postgres, status):
    """Each money statement sent directly and through SQLAlchemy, on two accounts alike."""
    from gpubridge.gateway import money_statements as sql

    database = postgres
    money = MoneyPath(database)
    accounts_made = [await funded(database, 10_000), await funded(database, 10_000)]

    async def through_engine(statement, params):  # type: ignore[no-untyped-def]
        async with database.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return (await conn.execute(statement, params)).first()

    # One job's values and end, made once: each account's job differs by its id alone.
    template, started = store.new_job(
        id=str(uuid.uuid4()),
        account_id="",
        service="llm-4090",
        model="m",
        input={"prompt": "hi", "nested": [1, None, {"a": "é"}]},
        status=JobStatus.RUNNING.value,
        claimed_by="here",
        hold_micros=4_000,
        webhook_url="https://example.com/hook",
        request_hash="h",
    )
    completed = status == JobStatus.COMPLETED
    finished = store.finished_values(
        started,
        status,
        output={"text": "ok"} if completed else None,
        error=None if completed else {"code": "x", "message": "m"},
        usage={"output_tokens": 2},
        cost_micros=1_500 if completed else 0,
        backend="remote-1",
    )
    spent = 1_500 if completed else 0
    made = []
    try:
        today = utcnow().date()
        for account, run in zip(accounts_made, (database.direct.fetchrow, through_engine)):
            job_id = str(uuid.uuid4())
            made.append(job_id)
            values = {**template, "id": job_id, "account_id": account}
            entry = ledger.hold_entry(account, 4_000, job_id=job_id)
            admitted = await run(
                sql.admit_statement(False), sql.admit_params(account, 4_000, today, entry, values)
            )
            assert admitted is not None
            if completed:
                entries = ledger.capture_entries(
                    account, job_id=job_id, held_micros=4_000, cost=1_500
                )
            else:
                entries = [ledger.refund_entry(account, job_id=job_id, held_micros=4_000, memo="x")]
            give_back = ledger.give_back(account, 4_000, spent, started.created_at.date())
            finish = {"job": job_id, **{f"new_{k}": v for k, v in finished.items()}}
            params = sql.settle_params(finish, "{}", entries, give_back)
            assert await run(sql.settle_statement(len(entries)), params) is not None
        by_direct, by_engine = [await _rows(database, job_id) for job_id in made]
    finally:
        await money.close()
    assert by_direct == by_engine
    assert len(by_direct[0]) == 1 and len(by_direct[1]) == 1 + len(entries)
    assert [await balance(database, a) for a in accounts_made] == [10_000 - spent] * 2


async def test_a_sqlite_uri_database_admits_and_settles_in_plain_transactions(tmp_path):
    from gpubridge.db import Database

    database = Database(f"sqlite+aiosqlite:///file:{tmp_path / 'uri.db'}?uri=true")
    await database.create_all()
    money = MoneyPath(database)
    try:
        assert money.writer is None  # a URI may name what a second connection cannot share
        account = await funded(database, 10_000)
        job = await admit(money, account, 4_000)
        settled = await money.settle(job, JobStatus.COMPLETED, cost_micros=1_000)
        assert settled.job is not None and settled.job.cost_micros == 1_000
        assert await balance(database, account) == 9_000
        with pytest.raises(InsufficientCredits):
            await admit(money, account, 20_000)
    finally:
        await money.close()
        await database.dispose()
