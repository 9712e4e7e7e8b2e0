"""Card payments taken back after their credits were granted: refunds and disputes.

A ``charge.refunded`` or ``charge.dispute.created`` event names the payment intent of a card
top-up (a Checkout session or an auto top-up charge). The credits that payment bought are
debited in proportion to the amount reversed, never more than were credited, even if that
takes the balance below zero; an account below zero starts no paid work until it is topped up.
Each debit carries the reference ``stripe-reversal:<intent>:<refund total or dispute id>``, so
a second delivery debits nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db.tables import accounts, auto_topups, checkout_sessions, ledger_entries
from gpubridge.payments import ledger

REVERSAL_EVENTS = {"charge.refunded", "charge.dispute.created"}


@dataclass(frozen=True)
class Purchase:
    """A card payment that bought credits."""

    account_id: str
    amount_cents: int
    credits_micros: int
    package: str


async def reverse(conn: AsyncConnection, event_type: str, obj: dict[str, Any]) -> str:
    """Debit the credits a refunded or disputed payment bought; the outcome in a word."""
    intent = obj.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    purchase = await _purchase(conn, str(intent)) if intent else None
    if purchase is None:
        return "unknown_payment"
    await _lock(conn, purchase.account_id)
    prefix = f"stripe-reversal:{intent}:"
    if event_type == "charge.refunded":
        refunded = _cents(obj.get("amount_refunded"))
        target = _share(purchase, refunded) - await _debited(conn, prefix + "refund:")
        reference, what = f"{prefix}refund:{refunded}", "refunded"
    else:
        target = _share(purchase, _cents(obj.get("amount")))
        reference, what = f"{prefix}dispute:{obj.get('id')}", "disputed"
    if await conn.scalar(
        select(ledger_entries.c.id).where(ledger_entries.c.reference == reference)
    ):
        return "already_debited"
    micros = min(target, purchase.credits_micros - await _debited(conn, prefix))
    if micros <= 0:
        return "already_debited"
    await ledger.debit(
        conn,
        purchase.account_id,
        micros,
        house="card",
        memo=f"card top-up {purchase.package} {what}",
        reference=reference,
    )
    return "debited"


def _cents(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _share(purchase: Purchase, cents: int) -> int:
    """The credits bought by ``cents`` of the payment (all of them for the whole amount)."""
    cents = min(cents, purchase.amount_cents)
    return purchase.credits_micros * cents // purchase.amount_cents


async def _debited(conn: AsyncConnection, prefix: str) -> int:
    """Credits already taken back under references starting with ``prefix``."""
    value = await conn.scalar(
        select(func.coalesce(func.sum(-ledger_entries.c.available_delta), 0)).where(
            ledger_entries.c.reference.startswith(prefix, autoescape=True)
        )
    )
    return int(value or 0)


async def _lock(conn: AsyncConnection, account_id: str) -> None:
    """Serialize reversals of one account (two refund events of one charge read the same
    total otherwise). SQLite has a single writer and needs no lock."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            select(accounts.c.id).where(accounts.c.id == account_id).with_for_update()
        )


async def _purchase(conn: AsyncConnection, intent_id: str) -> Purchase | None:
    for table, paid in (
        (checkout_sessions, checkout_sessions.c.status == "completed"),
        (auto_topups, auto_topups.c.status == "succeeded"),
    ):
        row = (
            await conn.execute(
                select(
                    table.c.account_id,
                    table.c.amount_cents,
                    table.c.credits_micros,
                    table.c.package,
                ).where(table.c.payment_intent_id == intent_id, paid)
            )
        ).first()
        if row is not None:
            return Purchase(row[0], int(row[1]), int(row[2]), str(row[3]))
    return None
