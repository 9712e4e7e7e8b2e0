"""The x402 SDK's ``upto`` EVM scheme, run in process as this server's own facilitator.

A metered payment is a Permit2 ``PermitWitnessTransferFrom`` of a maximum, signed by the payer
for x402's upto proxy, naming this server's settlement address as the only facilitator. The
SDK's facilitator code checks it (spender, recipient, facilitator, deadline, amount, token, the
EIP-712 signature, the payer's allowance and balance, and a simulation of the settlement) and
settles it for an amount the server chooses, never above the maximum: the proxy and Permit2
enforce that again on chain.

The SDK's facilitator is synchronous (web3 ``Web3``): its calls run in a worker thread. The
SDK and the Ethereum libraries are imported with the first metered payment.
"""

from __future__ import annotations

import asyncio
import logging
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

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
from gpubridge.recursion import keep_recursion_limit

if TYPE_CHECKING:
    from web3 import Web3

log = logging.getLogger(__name__)

PERMIT2_ADDRESS = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
"""Uniswap's Permit2, at the same address on every EVM chain."""
PERMIT2_NONCE_BITMAP_ABI: list[dict[str, Any]] = [
    {
        "name": "nonceBitmap",
        "type": "function",
        "stateMutability": "view",
        "inputs": [
            {"name": "owner", "type": "address"},
            {"name": "wordPos", "type": "uint256"},
        ],
        "outputs": [{"name": "", "type": "uint256"}],
    }
]


class SettlementUnknown(Exception):
    """A settlement whose outcome is not known (no answer, or not landed yet): Permit2's nonce
    tells later whether it happened."""


class UptoSettler(Protocol):
    """Who verifies and settles metered payments: this server (``UptoEngine``) or the
    configured facilitator (``upto_remote.RemoteUptoEngine``)."""

    @property
    def facilitator(self) -> str | None:
        """The address a payer's witness must name; None while it is not known."""

    async def prepare(self) -> None: ...

    def use_web3(self, w3: Any) -> None: ...

    async def verify(self, payment: UptoPayment, offer: Offer) -> None: ...

    async def settle(self, document: dict[str, Any], offer: Offer, amount: int) -> str: ...

    async def nonce_used(self, payer: str, nonce: int) -> bool: ...


def settlement_address(settlement_key: str) -> str:
    """The address of the key that settles (the facilitator a metered payment names)."""
    with keep_recursion_limit():
        from eth_account import Account

    return str(Account.from_key(settlement_key).address)


class UptoEngine:
    """Verifies and settles metered payments with the settlement key, through the SDK."""

    def __init__(self, config: X402Config) -> None:
        if config.settlement_key is None:
            raise ValueError("metered payments are settled with the settlement key")
        self.config = config
        self._key = config.settlement_key
        self._w3: Web3 | None = None

    @cached_property
    def facilitator(self) -> str:
        return settlement_address(self._key)

    async def prepare(self) -> None:
        """Nothing to learn: this server settles with its own key."""

    def use_web3(self, w3: Web3) -> None:
        """Talk to this node instead of ``rpc_url`` (a local chain, tests)."""
        self._w3 = w3
        self.__dict__.pop("_scheme", None)

    @cached_property
    def _scheme(self) -> Any:
        with keep_recursion_limit():
            from x402.mechanisms.evm.signers import FacilitatorWeb3Signer
            from x402.mechanisms.evm.upto.facilitator import UptoEvmScheme

        signer = FacilitatorWeb3Signer(
            self._key,
            self.config.rpc_url,
            confirmation_timeout_seconds=self.config.settle_timeout_s,
        )
        if self._w3 is not None:
            signer._w3 = self._w3
        return UptoEvmScheme(signer)

    def _requirements(self, offer: Offer, amount: int) -> Any:
        from x402.schemas import PaymentRequirements

        terms = requirements_upto(self.config, offer)
        terms["amount"] = str(amount)
        return PaymentRequirements.model_validate(terms)

    @staticmethod
    def _payload(document: dict[str, Any]) -> Any:
        from x402.schemas import PaymentPayload

        return PaymentPayload.model_validate(document)

    async def verify(self, payment: UptoPayment, offer: Offer) -> None:
        """``PaymentRejected`` unless ``payment`` authorizes exactly the ceiling of ``offer``
        to this server's ``payTo``, settleable by this server, and would settle now."""
        if payment.network != self.config.network:
            raise PaymentRejected(errors.NETWORK_MISMATCH, f"payments are on {self.config.network}")
        if payment.accepted.get("scheme") != SCHEME_UPTO:
            raise PaymentRejected(errors.UNSUPPORTED_SCHEME, "the payment is not an upto one")
        check_stated(self.config, payment.accepted, offer)
        offer = with_facilitator(offer, self.facilitator)
        try:
            payload = self._payload(payment.document)
        except ValueError as exc:
            raise PaymentRejected(
                errors.INVALID_PAYLOAD, f"the payment is malformed: {exc}"
            ) from None
        requirements = self._requirements(offer, offer.amount_micros)
        try:
            result = await asyncio.to_thread(self._scheme.verify, payload, requirements)
        except Exception as exc:  # the node did not answer (the SDK reports refusals itself)
            log.warning("an upto payment could not be checked: %s: %s", type(exc).__name__, exc)
            raise PaymentNetworkUnavailable(
                "the chain could not be reached to check the authorization; retry later"
            ) from None
        if not result.is_valid:
            # The SDK reports a node that does not answer as a failed check: tell them apart.
            if not await asyncio.to_thread(self._node_answers):
                raise PaymentNetworkUnavailable(
                    "the chain could not be reached to check the authorization; retry later"
                )
            raise PaymentRejected(
                str(result.invalid_reason or errors.INVALID_PAYLOAD),
                str(result.invalid_message or "the Permit2 authorization does not pay"),
            )

    def _node_answers(self) -> bool:
        try:
            self._scheme._signer._w3.eth.block_number  # noqa: B018 (a read, for its error)
        except Exception:
            return False
        return True

    async def settle(self, document: dict[str, Any], offer: Offer, amount: int) -> str:
        """Move ``amount`` (at most the authorized maximum) to ``payTo``; the transaction hash
        ("" when the amount is zero and nothing moves). ``PaymentRejected`` when it fails."""
        offer = with_facilitator(offer, self.facilitator)
        requirements = self._requirements(offer, amount)
        result = await asyncio.to_thread(self._scheme.settle, self._payload(document), requirements)
        if not result.success:
            raise PaymentRejected(
                str(result.error_reason or "settlement_failed"),
                str(result.error_message or "the metered settlement failed"),
            )
        return str(result.transaction or "")

    async def nonce_used(self, payer: str, nonce: int) -> bool:
        """Whether Permit2 has spent ``payer``'s ``nonce`` (the authorization was settled)."""
        from web3 import Web3

        owner = Web3.to_checksum_address(payer)

        def read() -> bool:
            signer = self._scheme._signer
            word = signer.read_contract(
                PERMIT2_ADDRESS, PERMIT2_NONCE_BITMAP_ABI, "nonceBitmap", owner, nonce >> 8
            )
            return bool((int(word) >> (nonce & 0xFF)) & 1)

        return await asyncio.to_thread(read)


def with_facilitator(offer: Offer, facilitator: str) -> Offer:
    if offer.upto_facilitator == facilitator:
        return offer
    from dataclasses import replace

    return replace(offer, upto_facilitator=facilitator)
