"""Paid requests kept beyond their exchange: a settlement not confirmed in time
(``settlement_pending``) and a request its payer named with a payment identifier.

A pending request keeps what its job needs (service, input, webhook, priority, the
Idempotency-Key) under the job id its client was given; the gateway creates that job once the
transfer is confirmed (``submitted``), or releases the request when the transfer never lands
(``released``), or when the job is refused after the payment landed (``refused``: the payment
stays in the wallet account). A payment identifier is unique per payer: a paid retry carrying
it finds the first request (``by_identifier``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.db.tables import x402_requests
from gpubridge.ids import random_uuid

PENDING = "settlement_pending"
SUBMITTED = "submitted"
RELEASED = "released"
REFUSED = "refused"


class IdentifierTaken(Exception):
    """Another request of this payer holds this payment identifier."""


@dataclass(frozen=True)
class PaidRequest:
    id: str
    job_id: str
    payment_id: str
    payer: str
    payment_identifier: str | None
    request_hash: str
    service: str
    input: Any
    webhook_url: str | None
    priority: str | None
    idempotency_key: str | None
    version: int
    status: str
    error: str | None
    created_at: datetime


def _from_row(row: Any) -> PaidRequest:
    return PaidRequest(
        row.id,
        row.job_id,
        row.payment_id,
        row.payer,
        row.payment_identifier,
        row.request_hash,
        row.service,
        row.input,
        row.webhook_url,
        row.priority,
        row.idempotency_key,
        int(row.version),
        row.status,
        row.error,
        row.created_at,
    )


async def record(
    db: Database,
    *,
    job_id: str,
    payment_id: str,
    payer: str,
    payment_identifier: str | None,
    request_hash: str,
    service: str,
    input: Any,
    version: int,
    status: str,
    webhook_url: str | None = None,
    priority: str | None = None,
    idempotency_key: str | None = None,
) -> PaidRequest:
    """Keep a paid request; ``IdentifierTaken`` when its payer used the identifier already."""
    values: dict[str, Any] = {
        "id": random_uuid(),
        "job_id": job_id,
        "payment_id": payment_id,
        "payer": payer.lower(),
        "payment_identifier": payment_identifier,
        "request_hash": request_hash,
        "service": service,
        "input": input,
        "webhook_url": webhook_url,
        "priority": priority,
        "idempotency_key": idempotency_key,
        "version": version,
        "status": status,
        "created_at": utcnow(),
    }
    try:
        async with db.begin() as conn:
            await conn.execute(insert(x402_requests).values(**values))
    except IntegrityError:
        raise IdentifierTaken from None
    return PaidRequest(**values, error=None)


async def by_identifier(db: Database, payer: str, identifier: str) -> PaidRequest | None:
    async with db.connect() as conn:
        row = (
            await conn.execute(
                select(x402_requests).where(
                    x402_requests.c.payer == payer.lower(),
                    x402_requests.c.payment_identifier == identifier,
                )
            )
        ).first()
    return None if row is None else _from_row(row)


async def by_job(db: Database, job_id: str) -> PaidRequest | None:
    """The newest paid request for this job id."""
    async with db.connect() as conn:
        row = (
            await conn.execute(
                select(x402_requests)
                .where(x402_requests.c.job_id == job_id)
                .order_by(x402_requests.c.created_at.desc())
            )
        ).first()
    return None if row is None else _from_row(row)


async def pending(db: Database) -> list[PaidRequest]:
    """The requests whose settlement is not confirmed yet, oldest first."""
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                select(x402_requests)
                .where(x402_requests.c.status == PENDING)
                .order_by(x402_requests.c.created_at)
            )
        ).all()
    return [_from_row(r) for r in rows]


async def resolve(db: Database, request_id: str, status: str, error: str | None = None) -> bool:
    """End a pending request (``submitted``, ``released`` or ``refused``); False when it was
    no longer pending."""
    async with db.begin() as conn:
        result = await conn.execute(
            update(x402_requests)
            .where(x402_requests.c.id == request_id, x402_requests.c.status == PENDING)
            .values(
                status=status,
                error=None if error is None else error[:200],
                resolved_at=utcnow(),
            )
        )
    return result.rowcount == 1


async def move_job(db: Database, request_id: str, job_id: str) -> None:
    """The job a request got is an earlier one (its Idempotency-Key replayed it)."""
    async with db.begin() as conn:
        await conn.execute(
            update(x402_requests).where(x402_requests.c.id == request_id).values(job_id=job_id)
        )


async def forget(db: Database, request_id: str) -> None:
    """Drop a released request, so that its payment identifier can pay again."""
    async with db.begin() as conn:
        await conn.execute(
            delete(x402_requests).where(
                x402_requests.c.id == request_id, x402_requests.c.status == RELEASED
            )
        )


async def discard(db: Database, request_id: str) -> None:
    """Drop a request that got no job (refused before its job was created)."""
    async with db.begin() as conn:
        await conn.execute(delete(x402_requests).where(x402_requests.c.id == request_id))
