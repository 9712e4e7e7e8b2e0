"""Resolving a payment whose settlement was sent but not confirmed in time, from what the local
chain says: credited once when the authorization is used, left open while it may still land,
released when it cannot. On SQLite and PostgreSQL."""

from __future__ import annotations

from gpubridge.payments import ledger
from gpubridge.payments.x402 import codec, store
from gpubridge.payments.x402.codec import ExactPayment
from gpubridge.payments.x402.outcomes import Accepted, Released
from gpubridge.payments.x402.wallets import find_wallet_account
from tests.support.local_chain import LocalChain


async def reserve(database, chain: LocalChain, payload: dict) -> str:
    payment = codec.from_object(
        {"x402Version": 1, "scheme": "exact", "network": "local", "payload": payload}
    )
    assert isinstance(payment, ExactPayment)
    auth = payment.authorization
    return await store.reserve_authorization(
        database,
        network=f"eip155:{chain.chain_id}",
        asset=chain.usdc.address,
        payer=auth.payer,
        nonce=auth.nonce,
        valid_before=auth.valid_before,
        amount_micros=auth.value,
    )


async def test_a_used_authorization_is_credited_once_and_answers_as_accepted(database, chain, x402):
    payer = chain.new_payer(5000)
    payload = chain.authorization(payer, 5000)
    payment_id = await reserve(database, chain, payload)
    assert await x402.resolve(payment_id, 2) is None  # unused and still valid: open

    chain.settle_directly(payload)
    first = await x402.resolve(payment_id, 2)
    again = await x402.resolve(payment_id, 2)
    assert isinstance(first, Accepted) and isinstance(again, Accepted)
    assert first.receipt["network"] == f"eip155:{chain.chain_id}"
    account = await find_wallet_account(database, payer.address)
    assert account is not None
    async with database.connect() as conn:
        assert await ledger.available_balance(conn, account.id) == 5000


async def test_an_authorization_that_can_no_longer_be_used_is_released(database, chain, x402):
    payer = chain.new_payer(5000)
    payload = chain.authorization(payer, 5000)
    payment_id = await reserve(database, chain, payload)
    x402.clock = lambda: 2.0**40  # after its validBefore
    released = await x402.resolve(payment_id, 1)
    assert isinstance(released, Released)
    assert await x402.resolve(payment_id, 1) == released  # it stays released
    assert await find_wallet_account(database, payer.address) is None
