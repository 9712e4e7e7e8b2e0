"""Metered (``upto``) payments through the configured x402 facilitator.

The facilitator's ``GET /supported`` names the address that settles upto payments on this
network (``extra.facilitatorAddress``): the 402 offers ``upto`` once it is known, and a payer's
Permit2 witness names it. ``/verify`` checks an authorization of the ceiling; ``/settle`` with
the job's cost as the requirement's ``amount`` settles it after the job. Whether a settlement
landed (after a lost answer) is read from Permit2's nonce on the chain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gpubridge.payments.x402 import errors
from gpubridge.payments.x402.codec import UptoPayment
from gpubridge.payments.x402.config import X402Config
from gpubridge.payments.x402.errors import PaymentNetworkUnavailable, PaymentRejected
from gpubridge.payments.x402.requirements import (
    SCHEME_UPTO,
    Offer,
    check_stated,
    requirements_upto,
)
from gpubridge.payments.x402.settlement import FacilitatorSettlement
from gpubridge.payments.x402.upto import SettlementUnknown, with_facilitator

if TYPE_CHECKING:
    from gpubridge.payments.x402.chain import Chain

log = logging.getLogger(__name__)

ASK_AGAIN_S = 60.0
"""How long a facilitator that did not name an upto address is left before asking again."""


class RemoteUptoEngine:
    """Verifies and settles metered payments through the facilitator's HTTP API."""

    def __init__(
        self,
        config: X402Config,
        facilitator: FacilitatorSettlement,
        chain: Callable[[], Awaitable[Chain]],
    ) -> None:
        self.config = config
        self._remote = facilitator
        self._chain = chain
        self.facilitator: str | None = None
        self._asked_at = -ASK_AGAIN_S

    async def prepare(self) -> None:
        """Learn the facilitator's upto address (once; again a minute after a failure)."""
        if self.facilitator is not None or time.monotonic() - self._asked_at < ASK_AGAIN_S:
            return
        self._asked_at = time.monotonic()
        try:
            answer = await self._remote.ask("/supported")
        except PaymentNetworkUnavailable:
            log.warning("the x402 facilitator's supported kinds could not be read")
            return
        for kind in answer.get("kinds") or []:
            if not isinstance(kind, dict):
                continue
            extra = kind.get("extra") or {}
            address = extra.get("facilitatorAddress") if isinstance(extra, dict) else None
            if (
                kind.get("scheme") == SCHEME_UPTO
                and kind.get("network") == self.config.network
                and isinstance(address, str)
            ):
                self.facilitator = address
                return

    def use_web3(self, w3: Any) -> None:
        """Nothing to do: the facilitator talks to the chain."""

    def _body(self, document: dict[str, Any], offer: Offer) -> dict[str, Any]:
        return {
            "x402Version": 2,
            "paymentPayload": document,
            "paymentRequirements": requirements_upto(self.config, offer),
        }

    async def verify(self, payment: UptoPayment, offer: Offer) -> None:
        """``PaymentRejected`` unless the facilitator finds ``payment`` good for ``offer``."""
        if self.facilitator is None:
            raise PaymentRejected(errors.UNSUPPORTED_SCHEME, "upto is not offered right now")
        check_stated(self.config, payment.accepted, offer)
        offer = with_facilitator(offer, self.facilitator)
        answer = await self._remote.ask("/verify", self._body(payment.document, offer))
        if answer.get("isValid") is not True:
            raise PaymentRejected(
                str(answer.get("invalidReason") or errors.INVALID_PAYLOAD),
                str(answer.get("invalidMessage") or "the facilitator refused the payment"),
            )

    async def settle(self, document: dict[str, Any], offer: Offer, amount: int) -> str:
        """Have the facilitator move ``amount``; its transaction hash."""
        if self.facilitator is None:
            raise SettlementUnknown("the facilitator's upto address is not known yet")
        offer = with_facilitator(Offer(amount, offer.resource, offer.description), self.facilitator)
        answer = await self._remote.ask("/settle", self._body(document, offer))
        if answer.get("success") is True:
            return str(answer.get("transaction") or "")
        reason = str(answer.get("errorReason") or errors.TRANSACTION_FAILED)
        if reason == errors.SETTLEMENT_PENDING:
            raise SettlementUnknown("the facilitator has not seen the settlement land yet")
        raise PaymentRejected(
            reason, str(answer.get("errorMessage") or "the facilitator could not settle")
        )

    async def nonce_used(self, payer: str, nonce: int) -> bool:
        chain = await self._chain()
        return await chain.permit2_nonce_used(payer, nonce)
