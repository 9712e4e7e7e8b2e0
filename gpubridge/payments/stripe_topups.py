"""Card top-ups: Stripe Checkout sessions, and the webhook that credits them.

Credits are added only by a verified ``checkout.session.completed`` (or, for payment methods
that settle later, ``checkout.session.async_payment_succeeded``) event for a paid session this
server created; refunds and disputes take them back (``stripe_reversals``). Intake is
idempotent in the style of Polar's: the event id is inserted into ``stripe_events`` in the
same transaction as the credit, so a second delivery (even a concurrent one) conflicts on the
primary key and credits nothing; the ledger reference ``stripe:<session or intent id>`` makes
a credit unique across event types too. An event is recorded only once it is applied: one
that could not be (a session or payment not known here yet, amounts that do not match) is
answered 409, so that Stripe delivers it again later.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts, checkout_sessions, stripe_events
from gpubridge.errors import BadRequest, Conflict, NotFound
from gpubridge.jsontext import parse_json
from gpubridge.money import micros_to_usd
from gpubridge.payments import ledger
from gpubridge.payments.auto_topup import AutoTopups, credit_once, settle_intent
from gpubridge.payments.packages import package_named
from gpubridge.payments.stripe_api import StripeApi, StripeConfig, StripeNotConfigured
from gpubridge.payments.stripe_reversals import REVERSAL_EVENTS, reverse
from gpubridge.settings import Settings

log = logging.getLogger(__name__)

INTENT_EVENTS = {"payment_intent.succeeded", "payment_intent.payment_failed"}
SESSION_PAID_EVENTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
# Outcomes that applied nothing but may apply on a later delivery: not recorded, answered 409.
NOT_APPLIED = {
    "unknown_session",
    "mismatch",
    "unknown_attempt",
    "amount_mismatch",
    "unknown_payment",
}
# Outcomes that applied nothing and wait for another event (a payment still settling).
WAITING = {"unpaid"}


class InvalidStripeSignature(BadRequest):
    code = "invalid_signature"


class CardTopups:
    """Checkout sessions for credit packages, webhook intake, and auto top-up."""

    def __init__(self, db: Database, config: StripeConfig | None) -> None:
        self.db = db
        self.api = StripeApi(config) if config is not None else None
        self.auto = AutoTopups(db, self.api)

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> CardTopups:
        return cls(db, StripeConfig.from_settings(settings))

    async def close(self) -> None:
        if self.api is not None:
            await self.api.close()

    def _require_api(self) -> StripeApi:
        if self.api is None:
            raise StripeNotConfigured(
                "card payments are not configured on this server "
                "(set GPUBRIDGE_STRIPE_SECRET_KEY and GPUBRIDGE_STRIPE_WEBHOOK_SECRET)"
            )
        return self.api

    async def start_checkout(
        self,
        account_id: str,
        email: str | None,
        package_name: object,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Create a Checkout Session for a package; the webhook credits it once paid."""
        package = package_named(package_name)
        api = self._require_api()
        key = idempotency_key or uuid.uuid4().hex
        async with self.db.connect() as conn:
            customer = await conn.scalar(
                select(accounts.c.stripe_customer_id).where(accounts.c.id == account_id)
            )
        if customer is None:
            # Until a paid session saves it, the customer is found again by idempotency key.
            customer = await api.create_customer(account_id, email, f"customer-{account_id}")
        session = await api.create_checkout_session(
            account_id=account_id,
            customer=str(customer),
            package=package.name,
            amount_cents=package.price_cents,
            description=f"gpubridge credits: ${micros_to_usd(package.credits_micros):.2f}",
            key=f"topup-{account_id}-{key}",
        )
        try:
            async with self.db.begin() as conn:
                await conn.execute(
                    insert(checkout_sessions).values(
                        id=session.id,
                        account_id=account_id,
                        package=package.name,
                        amount_cents=package.price_cents,
                        credits_micros=package.credits_micros,
                        status="open",
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            pass  # the same Idempotency-Key again: Stripe returned the session already stored
        return {
            "checkout_url": session.url,
            "session_id": session.id,
            "package": package.name,
            "amount_usd": micros_to_usd(package.price_micros),
            "credits_usd": micros_to_usd(package.credits_micros),
        }

    async def take_webhook(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """Verify and apply one webhook delivery; the answer says what it did."""
        import stripe

        api = self._require_api()
        try:
            api.verify_event(payload, signature)
            event = parse_json(payload)
            event_id, event_type = str(event["id"]), str(event["type"])
            obj = event["data"]["object"]
        except stripe.SignatureVerificationError as exc:
            raise InvalidStripeSignature(f"invalid Stripe-Signature: {exc}") from None
        except (ValueError, KeyError, TypeError):
            raise BadRequest("not a Stripe event", code="invalid_event") from None
        for attempt in range(3):
            try:
                async with self.db.begin() as conn:
                    outcome = await self._apply(conn, event_id, event_type, obj)
                break
            except IntegrityError:
                # A concurrent delivery (or charge) committed first: look again, which finds
                # the event or the credit recorded. Past that, a 500 makes Stripe retry.
                if attempt == 2:
                    raise
        if outcome in NOT_APPLIED:
            log.warning(
                "stripe event %s not applied: %s", event_type, outcome, extra={"event_id": event_id}
            )
            raise Conflict(
                f"the event was not applied ({outcome}); Stripe will deliver it again",
                code="stripe_event_not_applied",
                outcome=outcome,
            )
        log.info("stripe event %s: %s", event_type, outcome, extra={"event_id": event_id})
        return {"received": True, "outcome": outcome}

    async def _apply(
        self, conn: AsyncConnection, event_id: str, event_type: str, obj: dict[str, Any]
    ) -> str:
        seen = await conn.scalar(select(stripe_events.c.id).where(stripe_events.c.id == event_id))
        if seen is not None:
            return "duplicate"
        outcome = await self._outcome(conn, event_type, obj)
        if outcome not in NOT_APPLIED and outcome not in WAITING:
            await conn.execute(
                insert(stripe_events).values(
                    id=event_id, type=event_type[:100], received_at=utcnow()
                )
            )
        return outcome

    async def _outcome(self, conn: AsyncConnection, event_type: str, obj: dict[str, Any]) -> str:
        if event_type in SESSION_PAID_EVENTS:
            return await self._complete_session(conn, obj)
        if event_type == "checkout.session.async_payment_failed":
            await conn.execute(
                update(checkout_sessions)
                .where(checkout_sessions.c.id == str(obj.get("id")))
                .where(checkout_sessions.c.status == "open")
                .values(status="failed", completed_at=utcnow())
            )
            return "payment_failed"
        if event_type in INTENT_EVENTS:
            return await settle_intent(conn, event_type, obj)
        if event_type in REVERSAL_EVENTS:
            return await reverse(conn, event_type, obj)
        return "ignored"

    async def _complete_session(self, conn: AsyncConnection, session: dict[str, Any]) -> str:
        row = (
            await conn.execute(
                select(checkout_sessions).where(checkout_sessions.c.id == str(session.get("id")))
            )
        ).first()
        if row is None:
            return "unknown_session"
        if session.get("payment_status") != "paid":
            return "unpaid"
        account = session.get("client_reference_id") or (session.get("metadata") or {}).get(
            "account_id"
        )
        if account != row.account_id or session.get("amount_total") != row.amount_cents:
            log.warning("checkout session does not match", extra={"session": row.id})
            return "mismatch"
        await ledger.lock_account(conn, row.account_id)
        credited = await credit_once(
            conn,
            row.account_id,
            int(row.credits_micros),
            house="card",
            reference=f"stripe:{row.id}",
            memo=f"card top-up {row.package}",
        )
        intent = session.get("payment_intent")
        if isinstance(intent, dict):
            intent = intent.get("id")
        await conn.execute(
            update(checkout_sessions)
            .where(checkout_sessions.c.id == row.id)
            .values(
                status="completed",
                completed_at=utcnow(),
                payment_intent_id=str(intent) if intent else row.payment_intent_id,
            )
        )
        customer = session.get("customer")
        if isinstance(customer, dict):
            customer = customer.get("id")
        if customer:
            await _save_customer(conn, row.account_id, str(customer))
        return "credited" if credited else "already_credited"


async def _save_customer(conn: AsyncConnection, account_id: str, customer: str) -> None:
    result = await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id, accounts.c.stripe_customer_id.is_(None))
        .values(stripe_customer_id=customer)
    )
    if result.rowcount == 0:
        exists = await conn.scalar(select(accounts.c.id).where(accounts.c.id == account_id))
        if exists is None:
            raise NotFound("account not found", code="account_not_found")
