"""Reservations and credits in the database, on SQLite and PostgreSQL: an authorization or a
transaction pays once even when claimed concurrently, and each payment is credited once."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts, ledger_entries, x402_payments
from gpubridge.payments import ledger
from gpubridge.payments.x402 import store
from gpubridge.payments.x402.txlogs import Transfer
from gpubridge.payments.x402.wallets import ensure_wallet_account

ASSET = "0x" + "aa" * 20
PAYER = "0x" + "bb" * 20


async def reserve(database, nonce: bytes) -> str:
    return await store.reserve_authorization(
        database,
        network="eip155:8453",
        asset=ASSET,
        payer=PAYER,
        nonce=nonce,
        valid_before=2**40,
        amount_micros=3000,
    )


async def attempt(call) -> str | None:
    try:
        return await call
    except store.AlreadyUsed:
        return None


async def test_the_same_authorization_reserved_concurrently_is_reserved_once(database):
    nonce = os.urandom(32)
    async with asyncio.timeout(60):
        results = await asyncio.gather(*(attempt(reserve(database, nonce)) for _ in range(20)))
    assert sum(r is not None for r in results) == 1
    assert await reserve(database, os.urandom(32))  # another nonce of the same payer is fine


async def test_a_reservation_is_settled_and_credited_once(database):
    account = await ensure_wallet_account(database, PAYER)
    payment_id = await reserve(database, os.urandom(32))
    tx_hash = "0x" + "cd" * 32
    await store.record_transaction(database, payment_id, tx_hash)
    first, second = await asyncio.gather(
        store.settle(
            database, payment_id, account_id=account.id, tx_hash=tx_hash, amount_micros=3000
        ),
        store.settle(
            database, payment_id, account_id=account.id, tx_hash=tx_hash, amount_micros=3000
        ),
    )
    assert sorted([first, second]) == [False, True]
    async with database.connect() as conn:
        assert await ledger.available_balance(conn, account.id) == 3000
        references = (
            (
                await conn.execute(
                    select(ledger_entries.c.reference).where(
                        ledger_entries.c.account_id == account.id
                    )
                )
            )
            .scalars()
            .all()
        )
    assert references == [f"x402:{payment_id}"]


async def test_a_failed_reservation_is_never_credited(database):
    account = await ensure_wallet_account(database, PAYER)
    payment_id = await reserve(database, os.urandom(32))
    await store.fail(database, payment_id, "transaction_failed")
    assert not await store.settle(
        database, payment_id, account_id=account.id, tx_hash=None, amount_micros=3000
    )
    async with database.connect() as conn:
        assert await ledger.available_balance(conn, account.id) == 0


async def test_a_transaction_hash_pays_once_even_when_claimed_concurrently(database):
    account = await ensure_wallet_account(database, PAYER)
    tx_hash = "0x" + os.urandom(32).hex()

    def record():
        return store.record_tx_payment(
            database,
            chain_id=8453,
            network="eip155:8453",
            asset=ASSET,
            payer=PAYER,
            tx_hash=tx_hash,
            transfers=[Transfer(PAYER, "0x" + "22" * 20, 5000, 3)],
            account_id=account.id,
        )

    async with asyncio.timeout(60):
        results = await asyncio.gather(*(attempt(record()) for _ in range(20)))
    assert sum(r is not None for r in results) == 1
    assert await store.tx_hash_used(database, 8453, tx_hash.upper().replace("0X", "0x"))
    async with database.connect() as conn:
        assert await ledger.available_balance(conn, account.id) == 5000


async def test_a_wallet_gets_one_account_however_many_first_payments_race(database):
    address = "0x" + os.urandom(20).hex()
    async with asyncio.timeout(60):
        found = await asyncio.gather(*(ensure_wallet_account(database, address) for _ in range(10)))
    assert len({account.id for account in found}) == 1
    async with database.connect() as conn:
        rows = (
            await conn.execute(
                select(accounts.c.email, accounts.c.api_key_hash).where(
                    accounts.c.wallet_address == address
                )
            )
        ).all()
    assert rows == [(None, None)]


@pytest.mark.parametrize("age_s", [0, 3600])
async def test_only_old_open_reservations_are_stale(database, age_s):
    payment_id = await reserve(database, os.urandom(32))
    async with database.begin() as conn:
        await conn.execute(
            update(x402_payments)
            .where(x402_payments.c.id == payment_id)
            .values(created_at=utcnow() - timedelta(seconds=age_s))
        )
    stale = await store.stale_reservations(database, utcnow() - timedelta(seconds=60))
    assert [r.id for r in stale] == ([payment_id] if age_s else [])
