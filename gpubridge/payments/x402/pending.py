"""What the chain says about reservations whose settlement outcome is not known yet.

``resolve`` follows one payment whose settlement was sent but not confirmed in time (its
request waits, ``settlement_pending``); ``reconcile`` sweeps reservations whose request gave up.
The chain decides both: an authorization that is used paid this server (it names our recipient
and amount), so its payer is credited, once (``store.settle`` moves only a reserved payment);
one that is unused after its ``validBefore``, or whose settlement reverted, can never pay (or
was not paid) and its reservation is released.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from gpubridge.db.engine import utcnow
from gpubridge.payments.x402 import store
from gpubridge.payments.x402.wallets import ensure_wallet_account

if TYPE_CHECKING:
    from gpubridge.payments.x402.outcomes import Accepted, Released
    from gpubridge.payments.x402.service import X402

log = logging.getLogger(__name__)

RECONCILE_GRACE_S = 60.0


async def resolve(x402: X402, payment_id: str, version: int) -> Accepted | Released | None:
    from gpubridge.payments.x402.chain import ChainUnavailable
    from gpubridge.payments.x402.outcomes import Released

    record = await store.payment(x402.db, payment_id)
    if record is None:
        return Released("no such payment")
    if record.status == store.FAILED:
        return Released(record.error or "the settlement failed")
    if record.status == store.RESERVED:
        assert record.nonce is not None and record.valid_before is not None
        chain = await x402.chain()
        try:
            receipt = await chain.receipt(record.tx_hash) if record.tx_hash else None
            used = await chain.authorization_state(
                x402.config.asset, record.payer, bytes.fromhex(record.nonce[2:])
            )
        except ChainUnavailable:
            return None
        if used:
            account = await ensure_wallet_account(x402.db, record.payer)
            await store.settle(
                x402.db,
                payment_id,
                account_id=account.id,
                tx_hash=record.tx_hash,
                amount_micros=record.amount_micros,
            )
            log.warning("x402 payment confirmed late", extra={"payment_id": payment_id})
        elif receipt is not None or record.valid_before < x402.clock():
            # Mined and reverted (nothing moved), or it can no longer be mined.
            reason = "the settlement reverted" if receipt is not None else "expired unsettled"
            await store.fail(x402.db, payment_id, reason)
            return Released(reason)
        else:
            return None
    return await x402.accepted(payment_id, version)


async def reconcile(x402: X402) -> None:
    """Settle or release reservations whose request gave up with the outcome unknown."""
    from gpubridge.payments.x402.chain import ChainUnavailable

    config = x402.config
    cutoff = utcnow() - timedelta(seconds=config.settle_timeout_s + RECONCILE_GRACE_S)
    stale = await store.stale_reservations(x402.db, cutoff)
    if not stale:
        return
    chain = await x402.chain()
    for reservation in stale:
        try:
            used = await chain.authorization_state(
                config.asset, reservation.payer, bytes.fromhex(reservation.nonce[2:])
            )
        except ChainUnavailable:
            return
        if used:
            account = await ensure_wallet_account(x402.db, reservation.payer)
            await store.settle(
                x402.db,
                reservation.id,
                account_id=account.id,
                tx_hash=reservation.tx_hash,
                amount_micros=reservation.amount_micros,
            )
            log.warning("x402 payment settled late", extra={"payment_id": reservation.id})
        elif reservation.valid_before < x402.clock():
            await store.fail(x402.db, reservation.id, "expired before it was settled")
