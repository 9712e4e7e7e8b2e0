"""Consumed transfers: the one record of every token transfer this server has credited.

x402 tx-hash proofs, the wallet credit of a refused proof and USDC top-up invoices all credit
on-chain transfers to the same recipient. Each inserts the transfers it credits into
``consumed_transfers``, keyed by (chain id, transaction hash, log index), inside the database
transaction that credits them: when two paths (or two replicas) offer one transfer at once, the
second insert fails on the key (``IntegrityError``, after the first commits on PostgreSQL) and
its whole transaction, credit included, rolls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import consumed_transfers, crypto_invoices, x402_payments

if TYPE_CHECKING:
    from gpubridge.payments.x402.txlogs import Transfer

X402 = "x402"
"""Paid an x402 request."""
X402_CREDIT = "x402_credit"
"""Offered as an x402 proof that was refused (too little, too late): credited to the sender's
wallet account instead."""
USDC = "usdc"
"""Paid a USDC top-up invoice."""


async def consume(
    conn: AsyncConnection,
    *,
    chain_id: int,
    tx_hash: str,
    asset: str,
    transfers: Sequence[Transfer],
    used_for: str,
    reference: str,
    account_id: str,
) -> None:
    """Record ``transfers`` (of one transaction) as credited; ``IntegrityError`` when one of
    them already is. Call it in the transaction that credits them."""
    now = utcnow()
    await conn.execute(
        insert(consumed_transfers),
        [
            {
                "chain_id": chain_id,
                "tx_hash": tx_hash.lower(),
                "log_index": t.log_index,
                "asset": asset.lower(),
                "sender": t.sender.lower(),
                "amount_units": t.value,
                "used_for": used_for,
                "reference": reference,
                "account_id": account_id,
                "consumed_at": now,
            }
            for t in transfers
        ],
    )


async def consumed_by(conn: AsyncConnection, chain_id: int, tx_hash: str) -> str | None:
    """How a transfer of this transaction was credited (``used_for``), or None."""
    found = await conn.scalar(
        select(consumed_transfers.c.used_for)
        .where(
            consumed_transfers.c.chain_id == chain_id,
            consumed_transfers.c.tx_hash == tx_hash.lower(),
        )
        .limit(1)
    )
    return str(found) if found is not None else None


async def hash_used(conn: AsyncConnection, chain_id: int, tx_hash: str) -> bool:
    """Whether a transaction already paid or was credited: a consumed transfer, an invoice it
    paid, or an x402 payment (the settlement of an authorization, recorded when it is sent, or
    a credit recorded before consumed transfers existed). A check before the work: the consumed
    transfers' key is what decides under concurrency."""
    tx = tx_hash.lower()
    if await consumed_by(conn, chain_id, tx) is not None:
        return True
    for table in (x402_payments, crypto_invoices):
        if await conn.scalar(select(table.c.id).where(table.c.tx_hash == tx)) is not None:
            return True
    return False
