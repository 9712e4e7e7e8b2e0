"""Auto top-up: charge the saved card off-session when a capture takes the balance below the
account's threshold.

A crossing is claimed by one guarded UPDATE inside the capture's transaction (it clears
``auto_topup_armed``), so concurrent captures charge at most once; the charge itself runs later,
outside any transaction, and each attempt is recorded in ``auto_topups``. A credit that brings
the balance back to the threshold re-arms the account. A failed charge leaves it disarmed until
some other credit does, so a declined card is not retried on every job.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db import Database
from gpubridge.db.engine import as_utc, utcnow
from gpubridge.db.tables import accounts, auto_topups, ledger_entries
from gpubridge.errors import Conflict, InvalidInput, NotFound
from gpubridge.ids import random_uuid
from gpubridge.money import micros_to_usd, usd_limit_to_micros, usd_to_micros
from gpubridge.payments import ledger
from gpubridge.payments.packages import Package, package_named
from gpubridge.payments.stripe_api import StripeApi, StripeApiError, StripeNotConfigured

log = logging.getLogger(__name__)

MIN_THRESHOLD_MICROS = usd_to_micros(1)
MAX_THRESHOLD_MICROS = usd_to_micros(10_000)
ATTEMPTS_SHOWN = 10

DISARM = (
    update(accounts)
    .where(
        accounts.c.id == bindparam("account"),
        accounts.c.auto_topup_enabled == 1,
        accounts.c.auto_topup_armed == 1,
        accounts.c.auto_topup_threshold_micros.is_not(None),
        accounts.c.balance_micros < accounts.c.auto_topup_threshold_micros,
    )
    .values(auto_topup_armed=0)
)
"""Claims a threshold crossing (``disarm_below_threshold``); public for transactions that run on
a synchronous connection."""
_REARM = (
    update(accounts)
    .where(
        accounts.c.id == bindparam("account"),
        accounts.c.auto_topup_armed == 0,
        accounts.c.balance_micros >= accounts.c.auto_topup_threshold_micros,
    )
    .values(auto_topup_armed=1)
)


async def disarm_below_threshold(conn: AsyncConnection, account_id: str) -> bool:
    """Claim this threshold crossing for one charge: True for exactly one caller per crossing."""
    result = await conn.execute(DISARM, {"account": account_id})
    return result.rowcount == 1


async def rearm_if_recovered(conn: AsyncConnection, account_id: str) -> None:
    """Arm auto top-up again once a credit has brought the balance back to the threshold."""
    await conn.execute(_REARM, {"account": account_id})


async def credit_once(
    conn: AsyncConnection, account_id: str, micros: int, *, house: str, reference: str, memo: str
) -> bool:
    """Credit a top-up unless ``reference`` was already credited. Two concurrent callers
    may both pass the check; the unique reference then fails one of them (IntegrityError),
    and its caller retries to find the credit done."""
    done = await conn.scalar(
        select(ledger_entries.c.id).where(ledger_entries.c.reference == reference)
    )
    if done is not None:
        return False
    await ledger.credit(
        conn, account_id, micros, house=house, kind="topup", memo=memo, reference=reference
    )
    await rearm_if_recovered(conn, account_id)
    return True


async def settle_intent(conn: AsyncConnection, event_type: str, intent: dict[str, Any]) -> str:
    """Apply a ``payment_intent.succeeded`` / ``payment_intent.payment_failed`` event to the
    auto top-up attempt it belongs to (found by the intent's metadata)."""
    attempt_id = (intent.get("metadata") or {}).get("auto_topup_id")
    if not attempt_id:
        return "ignored"
    row = (
        await conn.execute(select(auto_topups).where(auto_topups.c.id == str(attempt_id)))
    ).first()
    if row is None:
        return "unknown_attempt"
    intent_id = str(intent.get("id"))
    if event_type == "payment_intent.payment_failed":
        error = (intent.get("last_payment_error") or {}).get("message") or "payment failed"
        await _finish(conn, row.id, "failed", intent_id=intent_id, error=str(error))
        return "failed"
    if intent.get("amount_received", intent.get("amount")) != row.amount_cents:
        log.warning("auto top-up amount mismatch", extra={"attempt": row.id})
        return "amount_mismatch"
    credited = await credit_once(
        conn,
        row.account_id,
        int(row.credits_micros),
        house="card",
        reference=f"stripe:{intent_id}",
        memo=f"auto top-up {row.package}",
    )
    await _finish(conn, row.id, "succeeded", intent_id=intent_id)
    return "credited" if credited else "already_credited"


async def _finish(
    conn: AsyncConnection, attempt_id: str, status: str, *, intent_id: str | None, error: str = ""
) -> None:
    values: dict[str, Any] = {"status": status, "completed_at": utcnow()}
    if intent_id:
        values["payment_intent_id"] = intent_id
    if error:
        values["error"] = error[:500]
    await conn.execute(
        update(auto_topups)
        .where(auto_topups.c.id == attempt_id, auto_topups.c.status == "pending")
        .values(**values)
    )


def _attempt_view(row: Any) -> dict[str, Any]:
    completed = as_utc(row.completed_at)
    return {
        "id": row.id,
        "package": row.package,
        "amount_usd": row.amount_cents / 100,
        "credits_usd": micros_to_usd(int(row.credits_micros)),
        "status": row.status,
        "payment_intent_id": row.payment_intent_id,
        "error": row.error,
        "created_at": as_utc(row.created_at).isoformat(),  # type: ignore[union-attr]
        "completed_at": completed.isoformat() if completed else None,
    }


def threshold_micros(value: object) -> int:
    """A threshold in USD ($1..$10,000) as micro-USD, or a 422."""
    try:
        micros = usd_limit_to_micros(value)
    except ValueError:
        micros = -1
    if not MIN_THRESHOLD_MICROS <= micros <= MAX_THRESHOLD_MICROS:
        raise InvalidInput(
            "threshold must be a number of USD between 1 and 10000",
            violations=[{"path": "threshold", "message": "not a USD amount in 1..10000"}],
        )
    return micros


class AutoTopups:
    """Settings, attempts and off-session charges of auto top-up."""

    def __init__(self, db: Database, api: StripeApi | None) -> None:
        self.db = db
        self.api = api

    @property
    def active(self) -> bool:
        """Whether a capture may start a charge: only with Stripe configured. Without it no
        crossing is claimed, so an account stays armed for when the rail is back."""
        return self.api is not None

    async def _account(self, conn: AsyncConnection, account_id: str) -> Any:
        row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
        if row is None:
            raise NotFound("account not found", code="account_not_found")
        return row

    async def configure(
        self,
        account_id: str,
        *,
        enabled: bool,
        threshold: int | None = None,
        package: Package | None = None,
    ) -> dict[str, Any]:
        """Turn auto top-up on (needs a card saved by an earlier top-up) or off."""
        async with self.db.begin() as conn:
            row = await self._account(conn, account_id)
            values: dict[str, Any] = {"auto_topup_enabled": int(enabled)}
            if threshold is not None:
                values["auto_topup_threshold_micros"] = threshold
            if package is not None:
                values["auto_topup_package"] = package.name
            if enabled:
                if self.api is None:
                    raise StripeNotConfigured("card payments are not configured on this server")
                if not row.stripe_customer_id:
                    raise Conflict(
                        "auto top-up charges the card saved by a card top-up; "
                        "top up once with POST /account/topup first",
                        code="no_saved_card",
                    )
                if (threshold or row.auto_topup_threshold_micros) is None:
                    raise InvalidInput(
                        "threshold is required to enable auto top-up",
                        violations=[{"path": "threshold", "message": "required"}],
                    )
                if package is None and row.auto_topup_package is None:
                    raise InvalidInput(
                        "package is required to enable auto top-up",
                        violations=[{"path": "package", "message": "required"}],
                    )
                values["auto_topup_armed"] = 1
            await conn.execute(update(accounts).where(accounts.c.id == account_id).values(**values))
        return await self.view(account_id)

    async def view(self, account_id: str) -> dict[str, Any]:
        async with self.db.connect() as conn:
            # Attempts first: an attempt seen finished has its credit and re-arming seen too
            # (they commit together), even where each statement reads its own snapshot.
            attempts = (
                await conn.execute(
                    select(auto_topups)
                    .where(auto_topups.c.account_id == account_id)
                    .order_by(auto_topups.c.created_at.desc(), auto_topups.c.id)
                    .limit(ATTEMPTS_SHOWN)
                )
            ).all()
            row = await self._account(conn, account_id)
        threshold = row.auto_topup_threshold_micros
        return {
            "enabled": bool(row.auto_topup_enabled),
            "threshold": None if threshold is None else micros_to_usd(int(threshold)),
            "package": row.auto_topup_package,
            "armed": bool(row.auto_topup_armed),
            "card_saved": row.stripe_customer_id is not None,
            "attempts": [_attempt_view(a) for a in attempts],
        }

    async def charge(self, account_id: str) -> str | None:
        """One off-session charge for a claimed crossing; returns the attempt id (or None
        when there is nothing to charge). Failures are recorded or logged, never raised: this
        runs in the background, after the job's response."""
        try:
            return await self._charge(account_id)
        except Exception:
            log.exception("auto top-up charge failed", extra={"account_id": account_id})
            return None

    async def _charge(self, account_id: str) -> str | None:
        async with self.db.connect() as conn:
            row = await self._account(conn, account_id)
        if self.api is None or not row.stripe_customer_id or not row.auto_topup_package:
            return None
        package = package_named(row.auto_topup_package)
        attempt_id = random_uuid()
        async with self.db.begin() as conn:
            await conn.execute(
                insert(auto_topups).values(
                    id=attempt_id,
                    account_id=account_id,
                    package=package.name,
                    amount_cents=package.price_cents,
                    credits_micros=package.credits_micros,
                    status="pending",
                    created_at=utcnow(),
                )
            )
        try:
            method = await self.api.saved_payment_method(row.stripe_customer_id)
            if method is None:
                raise StripeApiError("the Stripe customer has no saved card", code="no_saved_card")
            charge = await self.api.charge_off_session(
                customer=row.stripe_customer_id,
                payment_method=method,
                amount_cents=package.price_cents,
                description=f"gpubridge auto top-up {package.name}",
                metadata={"account_id": account_id, "auto_topup_id": attempt_id},
                key=f"auto-topup-{attempt_id}",
            )
        except StripeApiError as exc:
            log.warning("auto top-up failed: %s", exc.code, extra={"attempt": attempt_id})
            intent = exc.details.get("payment_intent")
            async with self.db.begin() as conn:
                await _finish(conn, attempt_id, "failed", intent_id=intent, error=exc.message)
            return attempt_id
        if charge.status != "succeeded":
            # Processing: the payment_intent webhook finishes the attempt.
            async with self.db.begin() as conn:
                await conn.execute(
                    update(auto_topups)
                    .where(auto_topups.c.id == attempt_id)
                    .values(payment_intent_id=charge.payment_intent_id)
                )
            return attempt_id
        intent = {
            "id": charge.payment_intent_id,
            "amount": package.price_cents,
            "metadata": {"auto_topup_id": attempt_id},
        }
        for _ in range(2):
            try:
                async with self.db.begin() as conn:
                    await ledger.lock_account(conn, account_id)
                    await settle_intent(conn, "payment_intent.succeeded", intent)
                break
            except IntegrityError:
                continue  # a webhook for the same intent credited first: settle again
        return attempt_id
