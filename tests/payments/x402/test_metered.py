"""Metered (``upto``) payments in the database, on SQLite and PostgreSQL: the maximum is
credited once per authorization, one replica claims the settlement, and closing takes back
exactly the unused part, never settling above the maximum."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import insert

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import jobs
from gpubridge.errors import Conflict
from gpubridge.payments import ledger
from gpubridge.payments.ledger_check import check_ledger
from gpubridge.payments.x402 import metered
from gpubridge.payments.x402.store import SETTLED, AlreadyUsed
from gpubridge.payments.x402.wallets import ensure_wallet_account

ASSET = "0x" + "aa" * 20
PAYER = "0x" + "cc" * 20
MAXIMUM = 6000


async def authorize(database, nonce: int, job_id: str) -> str:
    """A reservation funded with its maximum, as the job's hold funds it."""
    payment_id = await reserve(database, nonce, job_id)
    account = await ensure_wallet_account(database, PAYER)
    async with database.begin() as conn:
        await metered.fund(conn, payment_id, account.id, MAXIMUM)
    return payment_id


async def reserve(database, nonce: int, job_id: str) -> str:
    account = await ensure_wallet_account(database, PAYER)
    return await metered.reserve(
        database,
        network="eip155:8453",
        asset=ASSET,
        payer=PAYER,
        nonce=nonce,
        deadline=2**40,
        maximum=MAXIMUM,
        document={"x402Version": 2},
        account_id=account.id,
        job_id=job_id,
    )


async def balance(database) -> int:
    account = await ensure_wallet_account(database, PAYER)
    async with database.connect() as conn:
        return await ledger.available_balance(conn, account.id)


async def test_an_authorization_is_reserved_once_and_funds_its_job_once(database):
    nonce = uuid.uuid4().int
    first = await authorize(database, nonce, str(uuid.uuid4()))
    with pytest.raises(AlreadyUsed):
        await reserve(database, nonce, str(uuid.uuid4()))
    assert await balance(database) == MAXIMUM
    account = await ensure_wallet_account(database, PAYER)
    with pytest.raises(Conflict):
        async with database.begin() as conn:
            await metered.fund(conn, first, account.id, MAXIMUM)
    second = await reserve(database, uuid.uuid4().int, str(uuid.uuid4()))
    with pytest.raises(Conflict):  # never more than the payer authorized
        async with database.begin() as conn:
            await metered.fund(conn, second, account.id, MAXIMUM + 1)
    assert await balance(database) == MAXIMUM
    payment = await metered.get(database, first)
    assert payment is not None and payment.nonce == nonce and payment.maximum == MAXIMUM
    async with database.connect() as conn:
        assert (await check_ledger(conn)).ok


async def test_one_claim_wins_and_closing_takes_back_only_the_unused_part(database):
    payment_id = await authorize(database, uuid.uuid4().int, str(uuid.uuid4()))
    claims = await asyncio.gather(*(metered.claim(database, payment_id) for _ in range(5)))
    assert sorted(claims) == [False, False, False, False, True]
    payment = await metered.get(database, payment_id)
    assert payment is not None
    with pytest.raises(ValueError):
        await metered.close(database, payment, SETTLED, settled=MAXIMUM + 1)
    assert await metered.close(database, payment, SETTLED, settled=2500, tx_hash="0x" + "1" * 64)
    assert not await metered.close(database, payment, SETTLED, settled=2500)
    assert await balance(database) == 2500  # the job's capture would spend exactly this
    closed = await metered.get(database, payment_id)
    assert closed is not None and (closed.status, closed.amount) == (SETTLED, 2500)


async def test_a_released_or_unpaid_payment_takes_back_the_whole_maximum(database):
    for status in (metered.RELEASED, metered.UNPAID):
        payment_id = await authorize(database, uuid.uuid4().int, str(uuid.uuid4()))
        before = await balance(database)
        assert await metered.claim(database, payment_id)
        payment = await metered.get(database, payment_id)
        assert payment is not None
        assert await metered.close(database, payment, status)
        assert await balance(database) == before - MAXIMUM


async def test_due_lists_authorizations_whose_job_ended_or_never_existed(database):
    account = await ensure_wallet_account(database, PAYER)
    running, ended = str(uuid.uuid4()), str(uuid.uuid4())
    async with database.begin() as conn:
        for job_id, status in ((running, "running"), (ended, "completed")):
            await conn.execute(
                insert(jobs).values(
                    id=job_id,
                    account_id=account.id,
                    service="llm-4090",
                    model="m",
                    input={},
                    status=status,
                    hold_micros=0,
                    cost_micros=0,
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
    waiting = await authorize(database, uuid.uuid4().int, running)
    finished = await authorize(database, uuid.uuid4().int, ended)
    due = {payment.id for payment in await metered.due(database, utcnow())}
    assert finished in due and waiting not in due
    assert await metered.job_cost(database, ended) == 0
    assert await metered.job_cost(database, running) is None


def test_the_ended_job_statuses_are_the_jobs_terminal_ones():
    from gpubridge.jobs.status import TERMINAL

    assert set(metered.JOB_ENDED) == {status.value for status in TERMINAL}
