"""Consumed transfers: one record per credited transfer, and whether a hash has paid."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import x402_payments
from gpubridge.payments.accounts import Accounts
from gpubridge.payments.transfers import USDC, X402, consume, consumed_by, hash_used
from gpubridge.payments.x402.txlogs import Transfer

TX = "0x" + "ab" * 32
SENDER = "0x" + "33" * 20
RECIPIENT = "0x" + "44" * 20


async def an_account(database) -> str:
    accounts = Accounts(database, default_daily_limit_micros=50_000_000, cache_s=0)
    return (await accounts.register(f"{uuid.uuid4().hex[:8]}@example.com")).account.id


async def consume_one(database, account_id: str, *, used_for: str, log_index: int = 0) -> None:
    async with database.begin() as conn:
        await consume(
            conn,
            chain_id=8453,
            tx_hash=TX.upper().replace("0X", "0x"),
            asset="0x" + "55" * 20,
            transfers=[Transfer(SENDER, RECIPIENT, 5_000, log_index)],
            used_for=used_for,
            reference=f"{used_for}:{TX}:{log_index}",
            account_id=account_id,
        )


async def test_a_consumed_transfer_has_used_its_hash_on_its_own_chain_only(database):
    account_id = await an_account(database)
    async with database.connect() as conn:
        assert not await hash_used(conn, 8453, TX)
    await consume_one(database, account_id, used_for=USDC)
    async with database.connect() as conn:
        assert await consumed_by(conn, 8453, TX.upper().replace("0X", "0x")) == USDC
        assert await hash_used(conn, 8453, TX)
        assert not await hash_used(conn, 84532, TX)


async def test_a_transfer_is_consumed_once(database):
    account_id = await an_account(database)
    await consume_one(database, account_id, used_for=USDC)
    with pytest.raises(IntegrityError):
        await consume_one(database, account_id, used_for=X402)
    await consume_one(database, account_id, used_for=X402, log_index=1)


async def test_an_x402_payment_that_the_hash_is_sent_to_settle_has_used_it(database):
    # Reserved: the settlement is sent and not yet confirmed, nothing is credited yet.
    async with database.begin() as conn:
        await conn.execute(
            insert(x402_payments).values(
                id=str(uuid.uuid4()),
                kind="exact",
                network="eip155:8453",
                asset="0x" + "55" * 20,
                payer=SENDER,
                tx_hash=TX,
                amount_micros=5_000,
                status="reserved",
                created_at=utcnow(),
            )
        )
    async with database.connect() as conn:
        assert await hash_used(conn, 8453, TX.upper().replace("0X", "0x"))
        assert await consumed_by(conn, 8453, TX) is None
