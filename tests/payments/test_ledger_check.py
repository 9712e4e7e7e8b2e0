"""The ledger check finds each broken invariant, naming the offending rows, on SQLite and
PostgreSQL (every database test runs it once more at its end, in tests/conftest.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, update

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts, checkout_sessions, ledger_entries
from gpubridge.payments import ledger
from gpubridge.payments.ledger_check import LedgerReport, check_ledger
from tests.payments.test_ledger import captured_job, end_job, funded_account, hold_job

TODAY = utcnow().date()


async def checked(database) -> LedgerReport:
    async with database.connect() as conn:
        return await check_ledger(conn)


async def repair(database, statement) -> None:
    async with database.begin() as conn:
        await conn.execute(statement)


async def test_a_sound_ledger_passes(database):
    account = await funded_account(database, 10_000)
    await captured_job(database, account, 4_000, 1_500)
    report = await checked(database)
    assert report.ok, report.summary()
    assert (report.accounts, report.jobs) == (1, 1)
    assert report.summary().startswith("ledger check: ok")


async def test_a_posting_that_does_not_balance_is_found(database):
    await funded_account(database, 10_000)
    posting = str(uuid.uuid4())
    stray = insert(ledger_entries).values(
        account_id=None,
        house="grants",
        posting_id=posting,
        kind="grant",
        available_delta=-5,
        held_delta=0,
        memo="",
        created_at=utcnow(),
    )
    await repair(database, stray)
    report = await checked(database)
    assert [f.check for f in report.findings] == ["unbalanced_posting"]
    assert report.findings[0].rows[0]["posting_id"] == posting
    await repair(database, ledger_entries.delete().where(ledger_entries.c.posting_id == posting))
    assert (await checked(database)).ok


async def test_a_balance_edited_outside_the_ledger_is_found(database):
    account = await funded_account(database, 10_000)
    edit = update(accounts).where(accounts.c.id == account)
    await repair(database, edit.values(balance_micros=20_000))
    report = await checked(database)
    assert [f.check for f in report.findings] == ["balance_mismatch"]
    assert report.findings[0].rows[0]["id"] == account
    assert "balance_mismatch" in report.summary()
    await repair(database, edit.values(balance_micros=10_000))


async def test_an_ended_job_that_still_holds_money_is_found(database):
    account = await funded_account(database, 10_000)
    job = await hold_job(database, account, 4_000)
    async with database.begin() as conn:
        await end_job(conn, job, "failed")  # ended without its refund
    report = await checked(database)
    assert [f.check for f in report.findings] == ["job_not_settled"]
    row = report.findings[0].rows[0]
    assert (row["id"], int(row["still_held"])) == (job, 4_000)
    async with database.begin() as conn:
        await ledger.refund(conn, account, job_id=job, held_micros=4_000, held_on=TODAY)
    assert (await checked(database)).ok


async def test_a_card_credit_without_a_paid_session_is_found(database):
    account = await funded_account(database, 1)
    async with database.begin() as conn:
        await ledger.credit(conn, account, 7, house="card", kind="topup", reference="stripe:cs_x")
    report = await checked(database)
    assert [f.check for f in report.findings] == ["house_mismatch"]
    row = report.findings[0].rows[0]
    assert (row["house"], int(row["ledger"]), int(row["records"])) == ("card", 7, 0)
    paid = insert(checkout_sessions).values(
        id="cs_x",
        account_id=account,
        package="credits_10",
        amount_cents=1,
        credits_micros=7,
        status="completed",
        created_at=utcnow(),
    )
    await repair(database, paid)
    assert (await checked(database)).ok
