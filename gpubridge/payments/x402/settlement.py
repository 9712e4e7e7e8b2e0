"""Settling ``exact`` payments: directly on chain with the operator's key, or through an x402
facilitator's ``/verify`` and ``/settle``.

Both do the chain-side verification first (the nonce is unused, the payer holds the amount) and
then settle. A settlement that reverts is a ``PaymentRejected`` (nothing moved); one whose
outcome is unknown (the node or facilitator stopped answering after the transaction may have
been sent) is ``PaymentNetworkUnavailable``, and the reservation stays for reconciliation; one
sent whose receipt did not come in time (or that a facilitator calls ``settlement_pending``) is
``Unconfirmed``, with its transaction hash, for the chain to decide later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from gpubridge.jsontext import parse_json
from gpubridge.payments.x402 import errors
from gpubridge.payments.x402.codec import ExactPayment
from gpubridge.payments.x402.config import X402Config, same_address
from gpubridge.payments.x402.errors import (
    PaymentNetworkUnavailable,
    PaymentRejected,
    Unconfirmed,
)
from gpubridge.payments.x402.requirements import Offer, requirements_v1, requirements_v2
from gpubridge.payments.x402.txlogs import transfers_in

if TYPE_CHECKING:
    import httpx

OnSent = Callable[[str], Awaitable[None]]


class Settlement(Protocol):
    async def verify(self, payment: ExactPayment, offer: Offer) -> None:
        """Raise ``PaymentRejected`` unless the chain would accept the authorization now."""

    async def settle(self, payment: ExactPayment, offer: Offer, on_sent: OnSent) -> str:
        """Settle the authorization; call ``on_sent`` with the tx hash once it is known."""


class DirectSettlement:
    """Sends ``transferWithAuthorization`` through the configured RPC node (the operator pays
    gas)."""

    def __init__(self, config: X402Config, chain: Callable[[], Awaitable[Any]]) -> None:
        self.config = config
        self._chain = chain

    async def verify(self, payment: ExactPayment, offer: Offer) -> None:
        from gpubridge.payments.x402.chain import ChainUnavailable

        auth = payment.authorization
        chain = await self._chain()
        try:
            used = await chain.authorization_state(self.config.asset, auth.payer, auth.nonce)
            balance = await chain.balance_of(self.config.asset, auth.payer)
        except ChainUnavailable:
            raise PaymentNetworkUnavailable("the payment network could not be reached") from None
        if used:
            raise PaymentRejected(
                errors.NONCE_ALREADY_USED, "this authorization's nonce is already used on chain"
            )
        if balance < auth.value:
            raise PaymentRejected(
                errors.INSUFFICIENT_BALANCE, "the payer's balance does not cover the payment"
            )

    async def settle(self, payment: ExactPayment, offer: Offer, on_sent: OnSent) -> str:
        from gpubridge.payments.x402.chain import ChainUnavailable, Reverted

        assert self.config.settlement_key is not None
        auth = payment.authorization
        chain = await self._chain()
        try:
            tx_hash: str = await chain.transfer_with_authorization(
                self.config.settlement_key, self.config.asset, auth, payment.signature
            )
        except Reverted:
            raise PaymentRejected(
                errors.TRANSACTION_FAILED, "the settlement transaction would revert"
            ) from None
        except ChainUnavailable:
            raise PaymentNetworkUnavailable("the payment network could not be reached") from None
        await on_sent(tx_hash)
        try:
            receipt = await chain.wait_for_receipt(tx_hash, self.config.settle_timeout_s)
        except ChainUnavailable:
            raise Unconfirmed(tx_hash) from None
        if receipt.status != 1:
            raise PaymentRejected(errors.TRANSACTION_FAILED, "the settlement transaction reverted")
        paid = sum(
            t.value
            for t in transfers_in(receipt, self.config.asset)
            if same_address(t.sender, auth.payer) and same_address(t.recipient, auth.to)
        )
        if paid < auth.value:
            raise PaymentRejected(
                errors.TRANSFER_EVENT_MISMATCH, "the settlement did not transfer the amount"
            )
        return tx_hash


class FacilitatorSettlement:
    """Asks an x402 facilitator to verify and settle (it pays gas and talks to the chain)."""

    def __init__(self, config: X402Config, client: httpx.AsyncClient) -> None:
        assert config.facilitator_url is not None
        self.config = config
        self.url = config.facilitator_url.rstrip("/")
        self.client = client

    def _request(self, payment: ExactPayment, offer: Offer) -> dict[str, Any]:
        requirements = (
            requirements_v2(self.config, offer)
            if payment.version == 2
            else requirements_v1(self.config, offer)
        )
        return {
            "x402Version": payment.version,
            "paymentPayload": payment.document,
            "paymentRequirements": requirements,
        }

    async def ask(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The facilitator's JSON answer to ``body`` (a GET without one);
        ``PaymentNetworkUnavailable`` when it has none."""
        import httpx  # imported by the client this class was given

        try:
            if body is None:
                response = await self.client.get(f"{self.url}{path}")
            else:
                response = await self.client.post(f"{self.url}{path}", json=body)
            answer = parse_json(response.content)
        except (httpx.HTTPError, ValueError):
            raise PaymentNetworkUnavailable("the x402 facilitator could not be reached") from None
        if not isinstance(answer, dict) or response.status_code >= 500:
            raise PaymentNetworkUnavailable("the x402 facilitator failed to answer")
        return answer

    async def verify(self, payment: ExactPayment, offer: Offer) -> None:
        answer = await self.ask("/verify", self._request(payment, offer))
        if answer.get("isValid") is not True:
            reason = str(answer.get("invalidReason") or "invalid_payload")
            raise PaymentRejected(
                reason, str(answer.get("invalidMessage") or "the facilitator refused the payment")
            )

    async def settle(self, payment: ExactPayment, offer: Offer, on_sent: OnSent) -> str:
        answer = await self.ask("/settle", self._request(payment, offer))
        transaction = answer.get("transaction")
        if (
            answer.get("success") is not True
            and answer.get("errorReason") == errors.SETTLEMENT_PENDING
            and isinstance(transaction, str)
            and transaction
        ):
            await on_sent(transaction.lower())
            raise Unconfirmed(transaction.lower())
        if answer.get("success") is not True or not isinstance(transaction, str):
            reason = str(answer.get("errorReason") or errors.TRANSACTION_FAILED)
            raise PaymentRejected(
                reason, str(answer.get("errorMessage") or "the facilitator could not settle")
            )
        await on_sent(transaction.lower())
        return transaction.lower()
