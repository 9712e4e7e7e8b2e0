"""The API document's proof mode: ``X-Payment: base64({"txHash", "from"})`` for a USDC transfer
already on chain.

The transaction must have succeeded, carry a ``Transfer`` from the configured USDC contract,
from ``from`` to this server's recipient, of at least the price; have enough confirmations
(1 up to the large amount, 5 above); and be mined within the payment window. Each transfer is
credited once (the consumed transfers' key). A final transfer that pays too little or came too
late pays no request but is still the payer's money: it is credited to the payer's wallet
account.

Binding: anyone who sees a transfer on chain could send its hash first and have their own
request paid from the payer's wallet account. So by default ``"signature"`` is required: an
EIP-191 ``personal_sign`` by ``from`` over ``binding_message`` (the hash, the request's method
and path, and the SHA-256 of its body). ``GPUBRIDGE_X402_REQUIRE_TX_SIGNATURE=false`` accepts
the API document's unsigned proofs (and that risk); a signature that is present must still be
valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpubridge.payments.x402 import errors
from gpubridge.payments.x402.codec import TxHashPayment
from gpubridge.payments.x402.config import X402Config, same_address
from gpubridge.payments.x402.errors import PaymentNetworkUnavailable, PaymentRejected
from gpubridge.payments.x402.requirements import Offer
from gpubridge.payments.x402.txlogs import Transfer, transfers_in, used_authorizations


@dataclass(frozen=True)
class RequestBinding:
    """The request a payment is for: what a tx-hash signature binds the payment to."""

    method: str
    path: str
    body_sha256: str


def binding_message(tx_hash: str, binding: RequestBinding) -> str:
    """The text a payer signs (``personal_sign``) to bind a transaction to one request."""
    return (
        "gpubridge x402 payment\n"
        f"tx: {tx_hash.lower()}\n"
        f"request: {binding.method.upper()} {binding.path}\n"
        f"body-sha256: {binding.body_sha256.lower()}"
    )


def check_binding(
    config: X402Config, payment: TxHashPayment, binding: RequestBinding | None
) -> None:
    """The signature binding, when present or required."""
    from gpubridge.payments.x402.signatures import personal_message_digest, recover

    if payment.signature is None:
        if config.require_tx_signature:
            raise PaymentRejected(
                errors.INVALID_SIGNATURE,
                "this server requires a signature by 'from' over the request (see binding_message)",
            )
        return
    if binding is None:
        raise PaymentRejected(errors.INVALID_SIGNATURE, "nothing to bind the signature to")
    digest = personal_message_digest(binding_message(payment.tx_hash, binding))
    if recover(digest, payment.signature) != payment.payer:
        raise PaymentRejected(
            errors.INVALID_SIGNATURE, "the signature is not by 'from' over this request"
        )


@dataclass(frozen=True)
class VerifiedTransfer:
    """The final (confirmed) transfers of the token from the payer to this server's recipient
    in one transaction: the payer's money, now held by the operator."""

    transfers: tuple[Transfer, ...]
    refusal: PaymentRejected | None
    """Why they do not pay this request (too little, or mined before the payment window), or
    None when they do. Either way they are the payer's money and are credited to the payer."""

    @property
    def amount(self) -> int:
        return sum(t.value for t in self.transfers)


async def verify_tx_payment(
    config: X402Config, chain: Any, payment: TxHashPayment, offer: Offer, now: float
) -> VerifiedTransfer:
    """The transfers the transaction made to this server, and whether they pay ``offer``;
    ``PaymentRejected`` when it made none that are final (unknown, failed, pending, no such
    transfer from ``from``, or the settlement of an x402 authorization)."""
    from gpubridge.payments.x402.chain import ChainUnavailable

    try:
        receipt = await chain.receipt(payment.tx_hash)
        if receipt is None:
            raise PaymentRejected(
                errors.INVALID_TRANSACTION_STATE, "the transaction is unknown or not mined yet"
            )
        latest = await chain.block_number()
        mined_at = await chain.block_timestamp(receipt.block_number)
    except ChainUnavailable:
        raise PaymentNetworkUnavailable("the payment network could not be reached") from None
    if receipt.status != 1:
        raise PaymentRejected(errors.INVALID_TRANSACTION_STATE, "the transaction failed")
    if used_authorizations(receipt, config.asset):
        raise PaymentRejected(
            errors.TRANSFER_EVENT_MISMATCH,
            "the transaction settled an x402 authorization; it cannot pay again",
        )
    ours = tuple(
        t
        for t in transfers_in(receipt, config.asset)
        if same_address(t.sender, payment.payer) and same_address(t.recipient, config.pay_to)
    )
    if not ours:
        raise PaymentRejected(
            errors.TRANSFER_EVENT_MISMATCH,
            f"the transaction has no transfer of {config.asset} from {payment.payer} "
            f"to {config.pay_to}",
        )
    paid = sum(t.value for t in ours)
    confirmations = latest - receipt.block_number + 1
    needed = config.confirmations_for(paid)
    if confirmations < needed:
        raise PaymentRejected(
            errors.INVALID_TRANSACTION_STATE,
            f"the transaction has {confirmations} confirmations; {needed} are needed",
        )
    refusal = None
    if paid < offer.amount_micros:
        refusal = PaymentRejected(
            errors.VALUE_MISMATCH,
            f"the transfer is {paid} atomic units; this request costs {offer.amount_micros}",
        )
    elif now - mined_at > config.max_timeout_s:
        refusal = PaymentRejected(
            errors.VALID_BEFORE_EXPIRED,
            f"the transaction is older than the {config.max_timeout_s} s payment window",
        )
    return VerifiedTransfer(ours, refusal)
