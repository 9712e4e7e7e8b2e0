"""Metered (``upto``) x402 payments in the database: authorized before the job, settled after.

An upto payment authorizes a maximum (the job's ceiling). Accepting it reserves the
authorization (unique per asset, payer and Permit2 nonce: ``reserved``). The job's hold is
then credited to the payer's wallet account in the very transaction that holds it and creates
the job (``fund``: ``authorized``), so that credit can pay for that job alone, and the job is
captured there like any other. Once the job has ended, the payment is claimed (``settling``,
by one replica), the job's cost is settled on chain, and the unused rest of the credit is
taken back from the wallet account (``settled``). A job that cost nothing settles nothing,
and a reservation whose job was never created credited nothing (``released``). A settlement
the chain refuses for good leaves the job unpaid: the whole credit is taken back, and the
wallet account owes the job's cost (``unpaid``).

So the x402 house account holds, at any time, what authorized payments credited and what
settled payments moved on chain (``ledger_check``), and the payer's other credit is never
touched by a metered payment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.db.tables import jobs, x402_payments
from gpubridge.errors import Conflict
from gpubridge.payments import ledger
from gpubridge.payments.x402 import store
from gpubridge.payments.x402.store import RESERVED, SETTLED

KIND_UPTO = "upto"
AUTHORIZED = "authorized"
SETTLING = "settling"
RELEASED = "released"
UNPAID = "unpaid"
JOB_ENDED = ("completed", "failed", "cancelled")
"""The job statuses after which nothing more is captured (only ``completed`` costs)."""
ABANDONED_AFTER = timedelta(minutes=10)
"""An authorization whose job was never created (the request failed in between) is released
after this long."""


@dataclass(frozen=True)
class MeteredPayment:
    id: str
    payer: str
    account_id: str
    job_id: str
    maximum: int
    nonce: int
    deadline: int
    document: dict[str, Any]
    status: str
    created_at: datetime
    amount: int
    """What the job's hold was credited (while authorized), then what it settled for."""
    tx_hash: str | None


def nonce_text(nonce: int) -> str:
    return f"0x{nonce:064x}"


async def reserve(
    db: Database,
    *,
    network: str,
    asset: str,
    payer: str,
    nonce: int,
    deadline: int,
    maximum: int,
    document: dict[str, Any],
    account_id: str,
    job_id: str,
) -> str:
    """Reserve the authorization for the job ``job_id`` (nothing credited yet);
    ``AlreadyUsed`` when its nonce already pays (or paid) for another request."""
    return await store.reserve(
        db,
        kind=KIND_UPTO,
        network=network,
        asset=asset,
        payer=payer,
        nonce=nonce_text(nonce),
        valid_before=deadline,
        amount_micros=0,
        authorized_micros=maximum,
        account_id=account_id,
        job_id=job_id,
        document=document,
    )


async def fund(conn: AsyncConnection, payment_id: str, account_id: str, micros: int) -> None:
    """Credit ``micros`` (the job's hold, at most the maximum) to the wallet account, in the
    caller's transaction: the one that holds it for the job."""
    result = await conn.execute(
        update(x402_payments)
        .where(
            x402_payments.c.id == payment_id,
            x402_payments.c.status == RESERVED,
            x402_payments.c.authorized_micros >= micros,
        )
        .values(status=AUTHORIZED, amount_micros=micros)
    )
    if result.rowcount != 1:
        raise Conflict(
            "the upto authorization does not cover this job's hold",
            code="authorization_does_not_cover",
        )
    if micros:
        await ledger.credit(
            conn,
            account_id,
            micros,
            house="x402",
            kind="x402",
            memo="x402 upto authorization, for its job (what it does not use is taken back)",
            reference=f"x402:{payment_id}",
        )


async def abandon(db: Database, payment_id: str) -> bool:
    """Release a reservation whose job was never created (nothing was credited)."""
    async with db.begin() as conn:
        result = await conn.execute(
            update(x402_payments)
            .where(x402_payments.c.id == payment_id, x402_payments.c.status == RESERVED)
            .values(status=RELEASED, settled_at=utcnow())
        )
    return result.rowcount == 1


async def taken(db: Database, asset: str, payer: str, nonce: int) -> bool:
    """Whether this authorization already pays (or paid) for a request here."""
    query = select(x402_payments.c.id).where(
        x402_payments.c.asset == asset.lower(),
        x402_payments.c.payer == payer.lower(),
        x402_payments.c.nonce == nonce_text(nonce),
    )
    async with db.connect() as conn:
        return (await conn.execute(query)).first() is not None


def _record(row: Any) -> MeteredPayment:
    return MeteredPayment(
        id=row.id,
        payer=row.payer,
        account_id=row.account_id,
        job_id=row.job_id,
        maximum=int(row.authorized_micros),
        nonce=int(row.nonce, 16),
        deadline=int(row.valid_before),
        document=row.document,
        status=row.status,
        created_at=row.created_at,
        amount=int(row.amount_micros),
        tx_hash=row.tx_hash,
    )


async def get(db: Database, payment_id: str) -> MeteredPayment | None:
    async with db.connect() as conn:
        row = (
            await conn.execute(
                select(x402_payments).where(
                    x402_payments.c.id == payment_id, x402_payments.c.kind == KIND_UPTO
                )
            )
        ).first()
    return _record(row) if row is not None else None


async def due(db: Database, settling_since: datetime) -> list[MeteredPayment]:
    """Authorized payments whose job has ended, reservations whose job was never created
    (long enough ago), and settlements claimed before ``settling_since`` that never finished
    (a crash)."""
    query = (
        select(x402_payments)
        .outerjoin(jobs, jobs.c.id == x402_payments.c.job_id)
        .where(x402_payments.c.kind == KIND_UPTO)
        .where(
            ((x402_payments.c.status == AUTHORIZED) & jobs.c.status.in_(JOB_ENDED))
            | (
                (x402_payments.c.status == RESERVED)
                & jobs.c.id.is_(None)
                & (x402_payments.c.created_at < utcnow() - ABANDONED_AFTER)
            )
            | ((x402_payments.c.status == SETTLING) & (x402_payments.c.settled_at < settling_since))
        )
        .order_by(x402_payments.c.created_at)
        .limit(100)
    )
    async with db.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_record(row) for row in rows]


async def job_cost(db: Database, job_id: str) -> int | None:
    """What the job was charged (0 when it failed or was cancelled); None while it runs or
    when it does not exist."""
    async with db.connect() as conn:
        row = (
            await conn.execute(select(jobs.c.status, jobs.c.cost_micros).where(jobs.c.id == job_id))
        ).first()
    if row is None or row.status not in JOB_ENDED:
        return None
    if row.status != "completed":
        return 0
    return int(row.cost_micros or 0)


async def job_exists(db: Database, job_id: str) -> bool:
    async with db.connect() as conn:
        row = (await conn.execute(select(jobs.c.id).where(jobs.c.id == job_id))).first()
    return row is not None


async def claim(db: Database, payment_id: str, *, from_status: str = AUTHORIZED) -> bool:
    """Take the payment to settle it (one replica wins)."""
    async with db.begin() as conn:
        result = await conn.execute(
            update(x402_payments)
            .where(x402_payments.c.id == payment_id, x402_payments.c.status == from_status)
            .values(status=SETTLING, settled_at=utcnow())
        )
    return result.rowcount == 1


async def close(
    db: Database,
    payment: MeteredPayment,
    status: str,
    *,
    settled: int = 0,
    tx_hash: str | None = None,
    error: str | None = None,
) -> bool:
    """End a claimed payment: ``settled`` moved on chain, the rest of what was credited is
    taken back from the wallet account. False when it was not being settled (already
    closed)."""
    if not 0 <= settled <= payment.amount or (status != SETTLED and settled):
        raise ValueError("a metered settlement is at most its credit, and only when settled")
    values: dict[str, Any] = {"status": status, "amount_micros": settled, "settled_at": utcnow()}
    if tx_hash:
        values["tx_hash"] = tx_hash.lower()
    if error is not None:
        values["error"] = error[:200]
    async with db.begin() as conn:
        result = await conn.execute(
            update(x402_payments)
            .where(x402_payments.c.id == payment.id, x402_payments.c.status == SETTLING)
            .values(**values)
        )
        if result.rowcount != 1:
            return False
        unused = payment.amount - settled
        if unused:
            memo = {
                SETTLED: f"x402 upto: {settled} of {payment.amount} settled, the rest unused",
                RELEASED: "x402 upto: nothing to settle, the authorization is unused",
                UNPAID: "x402 upto: the settlement failed, the job's cost is owed",
            }[status]
            await ledger.debit(
                conn,
                payment.account_id,
                unused,
                house="x402",
                kind="x402",
                memo=memo,
                reference=f"x402-unused:{payment.id}",
            )
    return True
