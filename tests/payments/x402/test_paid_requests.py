"""Paid requests kept beyond their exchange, on SQLite and PostgreSQL: a payer's payment
identifier names one request, even when two claim it at once, and a pending request ends once."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from gpubridge.payments.x402 import paid_requests, store

ASSET = "0x" + "aa" * 20
PAYER = "0x" + "bb" * 20


async def keep(database, identifier: str | None, status: str = paid_requests.PENDING) -> Any:
    payment_id = await store.reserve_authorization(
        database,
        network="eip155:8453",
        asset=ASSET,
        payer=PAYER,
        nonce=os.urandom(32),
        valid_before=2**40,
        amount_micros=3000,
    )
    return await paid_requests.record(
        database,
        job_id=str(os.urandom(16).hex()),
        payment_id=payment_id,
        payer=PAYER.upper().replace("0X", "0x"),
        payment_identifier=identifier,
        request_hash="ab" * 32,
        service="llm-4090",
        input={"prompt": "hi"},
        version=2,
        status=status,
    )


async def attempt(call: Any) -> Any:
    try:
        return await call
    except paid_requests.IdentifierTaken:
        return None


async def test_an_identifier_names_one_request_of_its_payer_even_when_claimed_at_once(database):
    kept = await asyncio.gather(*(attempt(keep(database, "id-0123456789abcdef")) for _ in range(8)))
    winners = [k for k in kept if k is not None]
    assert len(winners) == 1
    found = await paid_requests.by_identifier(database, PAYER, "id-0123456789abcdef")
    assert found is not None and found.id == winners[0].id
    assert found.payer == PAYER  # stored lowercase
    # Requests without an identifier never collide.
    assert await keep(database, None) and await keep(database, None)


async def test_a_pending_request_ends_once_and_only_a_released_one_is_forgotten(database):
    kept = await keep(database, "id-fedcba9876543210")
    assert [p.id for p in await paid_requests.pending(database)] == [kept.id]
    assert await paid_requests.resolve(database, kept.id, paid_requests.SUBMITTED)
    assert not await paid_requests.resolve(database, kept.id, paid_requests.RELEASED)
    assert await paid_requests.pending(database) == []
    await paid_requests.forget(database, kept.id)  # submitted: kept
    assert await paid_requests.by_job(database, kept.job_id) is not None

    released = await keep(database, "id-released-0123456")
    assert await paid_requests.resolve(database, released.id, paid_requests.RELEASED, "x" * 300)
    found = await paid_requests.by_job(database, released.job_id)
    assert found is not None and found.error == "x" * 200
    await paid_requests.forget(database, released.id)
    assert await paid_requests.by_identifier(database, PAYER, "id-released-0123456") is None
