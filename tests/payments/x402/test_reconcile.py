"""Reconciliation: a reservation whose request gave up with the outcome unknown is settled
from what the chain says, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import select, update

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import x402_payments
from gpubridge.payments import ledger
from gpubridge.payments.x402 import codec, store
from gpubridge.payments.x402.codec import ExactPayment
from gpubridge.payments.x402.wallets import find_wallet_account
from tests.support.local_chain import LocalChain


async def reserve_old(database, chain: LocalChain, payload: dict) -> str:
    payment = codec.from_object(
        {"x402Version": 1, "scheme": "exact", "network": "local", "payload": payload}
    )
    assert isinstance(payment, ExactPayment)
    auth = payment.authorization
    payment_id = await store.reserve_authorization(
        database,
        network=f"eip155:{chain.chain_id}",
        asset=chain.usdc.address,
        payer=auth.payer,
        nonce=auth.nonce,
        valid_before=auth.valid_before,
        amount_micros=auth.value,
    )
    async with database.begin() as conn:
        await conn.execute(
            update(x402_payments)
            .where(x402_payments.c.id == payment_id)
            .values(created_at=utcnow() - timedelta(hours=1))
        )
    return payment_id


async def status_of(database, payment_id: str) -> str:
    async with database.connect() as conn:
        return str(
            await conn.scalar(
                select(x402_payments.c.status).where(x402_payments.c.id == payment_id)
            )
        )


async def test_an_authorization_used_on_chain_is_credited_to_its_payer(database, chain, x402):
    payer = chain.new_payer(5000)
    payload = chain.authorization(payer, 5000)
    payment_id = await reserve_old(database, chain, payload)
    chain.settle_directly(payload)  # it settled, but the request never heard back

    await x402.reconcile()
    assert await status_of(database, payment_id) == "settled"
    account = await find_wallet_account(database, payer.address)
    assert account is not None
    async with database.connect() as conn:
        assert await ledger.available_balance(conn, account.id) == 5000
    await x402.reconcile()  # nothing left to do, nothing credited twice
    async with database.connect() as conn:
        assert await ledger.available_balance(conn, account.id) == 5000


async def test_an_unused_authorization_fails_once_it_can_no_longer_settle(database, chain, x402):
    payer = chain.new_payer(5000)
    expired = await reserve_old(
        database, chain, chain.authorization(payer, 5000, valid_before=int(time.time()) - 1)
    )
    pending = await reserve_old(database, chain, chain.authorization(payer, 5000))

    await x402.reconcile()
    assert await status_of(database, expired) == "failed"
    assert await status_of(database, pending) == "reserved"
    assert await find_wallet_account(database, payer.address) is None
