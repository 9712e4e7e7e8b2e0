"""Metered (``upto``) payments from the authorization to the settlement of what the job used.

``authorize`` verifies a Permit2 authorization of the job's ceiling with the SDK's scheme
(``upto.UptoEngine``, or the facilitator) and reserves it for the job; ``funding`` credits the
job's hold to the payer's wallet account in the transaction that holds it (``metered``).
``finish`` runs once the job has ended: it settles the job's cost on chain (nothing when the
job failed or cost nothing) and takes the unused rest back. The maintenance loop calls
``finish_due`` for every payment whose job has ended, so a settlement survives a restart; a
claim that a crash interrupted is resolved from Permit2's nonce: spent means settled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.payments.accounts import Account
from gpubridge.payments.x402 import errors, metered, store
from gpubridge.payments.x402.codec import UptoPayment
from gpubridge.payments.x402.config import X402Config, same_address
from gpubridge.payments.x402.errors import PaymentRejected
from gpubridge.payments.x402.metered import RELEASED, SETTLING, UNPAID, MeteredPayment
from gpubridge.payments.x402.requirements import Offer
from gpubridge.payments.x402.store import SETTLED, AlreadyUsed
from gpubridge.payments.x402.upto import UptoSettler
from gpubridge.payments.x402.wallets import ensure_wallet_account

log = logging.getLogger(__name__)

Funding = Callable[[AsyncConnection, int], Awaitable[None]]
"""Credits a job's hold (given) in the transaction that holds it."""

SETTLING_STALE_AFTER = timedelta(minutes=5)
"""A claim older than this without an outcome was interrupted (the process stopped)."""


class SettlementDeferred(Exception):
    """The settlement was refused while the authorization still lasts: tried again later."""


@dataclass(frozen=True)
class Settled:
    """What a metered payment settled for (0 when nothing moved) and its transaction."""

    amount_micros: int
    tx_hash: str
    status: str


class Metering:
    """Authorizes and settles metered payments, with this server's settlement key or through
    the facilitator (``engine``)."""

    def __init__(self, config: X402Config, db: Database, engine: UptoSettler) -> None:
        self.config = config
        self.db = db
        self.engine = engine

    async def authorize(
        self, payment: UptoPayment, offer: Offer, job_id: str
    ) -> tuple[Account, str]:
        """Verify ``payment`` for ``offer`` and reserve it for the job ``job_id``: the payer's
        wallet account and the payment's id."""
        auth = payment.authorization
        if not same_address(auth.token, self.config.asset):
            raise PaymentRejected(
                errors.REQUIREMENTS_MISMATCH, f"the asset must be {self.config.asset}"
            )
        if await metered.taken(self.db, self.config.asset, auth.payer, auth.nonce):
            raise errors.authorization_used()  # known here: no need to ask the chain
        await self.engine.verify(payment, offer)
        account = await ensure_wallet_account(self.db, auth.payer)
        try:
            payment_id = await metered.reserve(
                self.db,
                network=self.config.network,
                asset=self.config.asset,
                payer=auth.payer,
                nonce=auth.nonce,
                deadline=auth.deadline,
                maximum=auth.amount,
                document=payment.document,
                account_id=account.id,
                job_id=job_id,
            )
        except AlreadyUsed:
            raise errors.authorization_used() from None
        return account, payment_id

    def funding(self, payment_id: str, account_id: str) -> Funding:
        """What credits the job's hold, in the transaction that holds it."""

        async def fund(conn: AsyncConnection, hold_micros: int) -> None:
            await metered.fund(conn, payment_id, account_id, hold_micros)

        return fund

    async def finish(self, payment_id: str, *, abandoned: bool = False) -> Settled | None:
        """Settle the payment if its job has ended (or ``abandoned`` and its job was never
        created); what it settled, or None while the job runs or another replica settles."""
        payment = await metered.get(self.db, payment_id)
        if payment is None:
            return None
        if payment.status == store.RESERVED:
            if abandoned and not await metered.job_exists(self.db, payment.job_id):
                await metered.abandon(self.db, payment.id)
                return Settled(0, "", RELEASED)
            return None
        if payment.status != metered.AUTHORIZED:
            return _outcome(payment) if payment.status != SETTLING else None
        cost = await metered.job_cost(self.db, payment.job_id)
        if cost is None:
            return None  # the job runs (an authorized payment's job exists)
        if not await metered.claim(self.db, payment.id):
            return None
        try:
            return await self._settle(payment, cost or 0)
        except Exception:
            # The node did not answer: the claim stays, and the maintenance loop finds out
            # from Permit2 whether the transfer happened (``_resume``).
            log.warning(
                "a metered x402 settlement did not finish; it is resumed later",
                extra={"payment_id": payment.id},
                exc_info=True,
            )
            return None

    async def finish_due(self) -> None:
        """Settle every payment whose job has ended; resolve interrupted claims."""
        for payment in await metered.due(self.db, utcnow() - SETTLING_STALE_AFTER):
            try:
                if payment.status == SETTLING:
                    await self._resume(payment)
                else:
                    await self.finish(payment.id, abandoned=True)
            except Exception:
                log.warning(
                    "a metered x402 payment could not be settled yet",
                    extra={"payment_id": payment.id},
                    exc_info=True,
                )

    async def _settle(self, payment: MeteredPayment, cost: int) -> Settled:
        amount = min(cost, payment.amount)
        if amount == 0:
            await metered.close(self.db, payment, RELEASED)
            return Settled(0, "", RELEASED)
        offer = Offer(amount, "", "")
        try:
            tx_hash = await self.engine.settle(payment.document, offer, amount)
        except PaymentRejected as exc:
            if await self.engine.nonce_used(payment.payer, payment.nonce):
                # Settled meanwhile (an earlier attempt's transaction landed after all).
                await metered.close(self.db, payment, SETTLED, settled=amount)
                return Settled(amount, "", SETTLED)
            if payment.deadline > int(utcnow().timestamp()):
                # Maybe passing (gas, a busy node): the maintenance loop tries again while
                # the authorization lasts.
                raise SettlementDeferred(exc.reason) from None
            log.error(
                "a metered x402 settlement was refused: the job's cost is owed",
                extra={"payment_id": payment.id, "reason": exc.reason},
            )
            await metered.close(self.db, payment, UNPAID, error=exc.reason)
            return Settled(0, "", UNPAID)
        # Any other failure (the node did not answer) leaves the claim: ``_resume`` finds
        # out from the chain whether the transfer happened.
        await metered.close(self.db, payment, SETTLED, settled=amount, tx_hash=tx_hash)
        return Settled(amount, tx_hash, SETTLED)

    async def _resume(self, payment: MeteredPayment) -> None:
        cost = await metered.job_cost(self.db, payment.job_id) or 0
        amount = min(cost, payment.amount)
        if amount and await self.engine.nonce_used(payment.payer, payment.nonce):
            await metered.close(self.db, payment, SETTLED, settled=amount)
        elif amount and payment.deadline > int(utcnow().timestamp()):
            await self._settle(payment, amount)
        else:
            status = UNPAID if amount else RELEASED
            await metered.close(self.db, payment, status, error="authorization expired")


def _outcome(payment: MeteredPayment) -> Settled:
    return Settled(payment.amount, payment.tx_hash or "", payment.status)


def receipt(network: str, payer: str, settled: Settled | None) -> dict[str, Any]:
    """The ``PAYMENT-RESPONSE`` of a metered payment: what it settled for once its job has
    ended; before that, an authorization that has moved nothing yet."""
    if settled is None:
        return {
            "success": True,
            "transaction": "",
            "network": network,
            "payer": payer,
            "amount": "0",
        }
    body: dict[str, Any] = {
        "success": settled.status in (SETTLED, RELEASED),
        "transaction": settled.tx_hash,
        "network": network,
        "payer": payer,
        "amount": str(settled.amount_micros),
    }
    if settled.status == UNPAID:
        body["errorReason"] = errors.TRANSACTION_FAILED
    return body
