"""x402 payments in the database: reserved before any work, settled with a ledger credit.

An EIP-3009 authorization is reserved under the unique (asset, payer, nonce) before it is
settled, so concurrent requests carrying the same authorization pay at most one job; the
transfers of a tx-hash payment are consumed (``gpubridge.payments.transfers``, a key shared with
USDC top-ups) in the transaction of its credit, so a transfer is credited once, by one path.
The credit's ledger reference (``x402:<payment id>``) is unique too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.db.tables import x402_payments
from gpubridge.ids import random_uuid
from gpubridge.payments import ledger
from gpubridge.payments.transfers import X402, X402_CREDIT, consume, hash_used

if TYPE_CHECKING:
    from gpubridge.payments.x402.txlogs import Transfer

KIND_EXACT = "exact"
KIND_TX_HASH = "tx_hash"
RESERVED = "reserved"
SETTLED = "settled"
CREDITED = "credited"
"""A tx-hash transfer whose proof was refused (too little, too late): its amount went to the
sender's wallet account as credit and paid no request."""
FAILED = "failed"


class AlreadyUsed(Exception):
    """This authorization or transaction already paid (or is paying) for a request."""


@dataclass(frozen=True)
class Reservation:
    id: str
    payer: str
    nonce: str
    valid_before: int
    tx_hash: str | None
    amount_micros: int


async def reserve_authorization(
    db: Database,
    *,
    network: str,
    asset: str,
    payer: str,
    nonce: bytes,
    valid_before: int,
    amount_micros: int,
) -> str:
    """Reserve an authorization; ``AlreadyUsed`` when another request holds it."""
    return await reserve(
        db,
        kind=KIND_EXACT,
        network=network,
        asset=asset,
        payer=payer,
        nonce="0x" + nonce.hex(),
        valid_before=valid_before,
        amount_micros=amount_micros,
    )


async def reserve(
    db: Database,
    *,
    kind: str,
    asset: str,
    payer: str,
    nonce: str,
    valid_before: int,
    **columns: Any,
) -> str:
    """Reserve a signed authorization of any scheme under its unique (asset, payer, nonce);
    its id, or ``AlreadyUsed`` when another request holds it."""
    payment_id = random_uuid()
    try:
        async with db.begin() as conn:
            await conn.execute(
                insert(x402_payments).values(
                    id=payment_id,
                    kind=kind,
                    asset=asset.lower(),
                    payer=payer.lower(),
                    nonce=nonce,
                    valid_before=min(valid_before, 2**63 - 1),
                    status=RESERVED,
                    created_at=utcnow(),
                    **columns,
                )
            )
    except IntegrityError:
        raise AlreadyUsed from None
    return payment_id


async def record_transaction(db: Database, payment_id: str, tx_hash: str) -> None:
    """Remember the settlement transaction as soon as it is sent."""
    async with db.begin() as conn:
        await conn.execute(
            update(x402_payments)
            .where(x402_payments.c.id == payment_id)
            .values(tx_hash=tx_hash.lower())
        )


async def fail(db: Database, payment_id: str, error: str) -> None:
    """A reservation whose settlement failed for good (nothing moved on chain)."""
    async with db.begin() as conn:
        await conn.execute(
            update(x402_payments)
            .where(x402_payments.c.id == payment_id, x402_payments.c.status == RESERVED)
            .values(status=FAILED, error=error[:200])
        )


async def settle(
    db: Database, payment_id: str, *, account_id: str, tx_hash: str | None, amount_micros: int
) -> bool:
    """Mark a reservation settled and credit the payer's account, in one transaction.

    False when it was no longer reserved (reconciliation settled it already).
    """
    async with db.begin() as conn:
        values: dict[str, object] = {
            "status": SETTLED,
            "account_id": account_id,
            "settled_at": utcnow(),
        }
        if tx_hash is not None:
            values["tx_hash"] = tx_hash.lower()
        result = await conn.execute(
            update(x402_payments)
            .where(x402_payments.c.id == payment_id, x402_payments.c.status == RESERVED)
            .values(**values)
        )
        if result.rowcount != 1:
            return False
        await ledger.credit(
            conn,
            account_id,
            amount_micros,
            house="x402",
            kind="x402",
            memo=f"x402 payment {tx_hash or ''}".strip(),
            reference=f"x402:{payment_id}",
        )
    return True


async def record_tx_payment(
    db: Database,
    *,
    chain_id: int,
    network: str,
    asset: str,
    payer: str,
    tx_hash: str,
    transfers: Sequence[Transfer],
    account_id: str,
    refused: str | None = None,
) -> str:
    """Record a tx-hash payment and credit its ``transfers`` to ``account_id``, once;
    ``AlreadyUsed`` when one of them was credited before (by x402 or a top-up invoice).

    With ``refused`` (the x402 reason) the transfer paid no request: it is recorded as
    ``credited`` and its amount stays in the account as credit.
    """
    payment_id = random_uuid()
    amount_micros = sum(t.value for t in transfers)
    now = utcnow()
    try:
        async with db.begin() as conn:
            await consume(
                conn,
                chain_id=chain_id,
                tx_hash=tx_hash,
                asset=asset,
                transfers=transfers,
                used_for=X402_CREDIT if refused else X402,
                reference=f"x402:{payment_id}",
                account_id=account_id,
            )
            await conn.execute(
                insert(x402_payments).values(
                    id=payment_id,
                    kind=KIND_TX_HASH,
                    network=network,
                    asset=asset.lower(),
                    payer=payer.lower(),
                    tx_hash=tx_hash.lower(),
                    amount_micros=amount_micros,
                    status=SETTLED if refused is None else CREDITED,
                    error=refused,
                    account_id=account_id,
                    created_at=now,
                    settled_at=now,
                )
            )
            memo = f"x402 transfer {tx_hash.lower()}"
            await ledger.credit(
                conn,
                account_id,
                amount_micros,
                house="x402",
                kind="x402",
                memo=memo if refused is None else f"{memo} (paid no request: {refused})",
                reference=f"x402:{payment_id}",
            )
    except IntegrityError:
        raise AlreadyUsed from None
    return payment_id


async def stale_reservations(db: Database, created_before: datetime) -> list[Reservation]:
    """Reservations still open since before ``created_before`` (their request gave up)."""
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                select(x402_payments).where(
                    x402_payments.c.status == RESERVED,
                    x402_payments.c.kind == KIND_EXACT,
                    x402_payments.c.created_at < created_before,
                )
            )
        ).all()
    return [
        Reservation(r.id, r.payer, r.nonce, int(r.valid_before), r.tx_hash, int(r.amount_micros))
        for r in rows
    ]


async def tx_hash_used(db: Database, chain_id: int, tx_hash: str) -> bool:
    """Whether a transaction already paid or was credited (a cheap check before asking the
    chain; the consumed transfers' key is what decides under concurrency)."""
    async with db.connect() as conn:
        return await hash_used(conn, chain_id, tx_hash)


@dataclass(frozen=True)
class PaymentRecord:
    """One x402 payment as stored."""

    id: str
    status: str
    network: str
    payer: str
    nonce: str | None
    valid_before: int | None
    tx_hash: str | None
    amount_micros: int
    account_id: str | None
    error: str | None


async def payment(db: Database, payment_id: str) -> PaymentRecord | None:
    async with db.connect() as conn:
        row = (
            await conn.execute(select(x402_payments).where(x402_payments.c.id == payment_id))
        ).first()
    if row is None:
        return None
    return PaymentRecord(
        row.id,
        row.status,
        row.network,
        row.payer,
        row.nonce,
        None if row.valid_before is None else int(row.valid_before),
        row.tx_hash,
        int(row.amount_micros),
        row.account_id,
        row.error,
    )
