"""x402 errors: a rejected payment (402 with the requirements again), a malformed header (400),
a sanctioned payer (403), an unreachable payment network (503) and a settlement not confirmed
yet (202)."""

from __future__ import annotations

from typing import Any

from gpubridge.errors import (
    BadRequest,
    Forbidden,
    GpubridgeError,
    PaymentRequired,
    ServiceUnavailable,
)

# Reasons as the x402 SDK's exact EVM scheme names them.
UNSUPPORTED_SCHEME = "unsupported_scheme"
NETWORK_MISMATCH = "network_mismatch"
REQUIREMENTS_MISMATCH = "invalid_payment_requirements"
INVALID_SIGNATURE = "invalid_exact_evm_payload_signature"
RECIPIENT_MISMATCH = "invalid_exact_evm_payload_recipient_mismatch"
VALUE_MISMATCH = "invalid_exact_evm_payload_authorization_value_mismatch"
VALID_BEFORE_EXPIRED = "invalid_exact_evm_payload_authorization_valid_before"
VALID_AFTER_FUTURE = "invalid_exact_evm_payload_authorization_valid_after"
NONCE_ALREADY_USED = "invalid_exact_evm_nonce_already_used"
INSUFFICIENT_BALANCE = "invalid_exact_evm_insufficient_balance"
TRANSFER_EVENT_MISMATCH = "invalid_exact_evm_transfer_event_mismatch"
TRANSACTION_FAILED = "transaction_failed"
# The tx-hash proof mode has no SDK names; these follow the same style.
INVALID_TRANSACTION_STATE = "invalid_transaction_state"
TRANSACTION_ALREADY_USED = "transaction_already_used"
PAYMENT_REQUIRED = "Payment required"
SETTLEMENT_PENDING = "settlement_pending"
INVALID_PAYLOAD = "invalid_payload"
"""The SDK's settle error reason for a transaction sent but not confirmed yet."""


class PaymentRejected(Exception):
    """A payment that does not pay for this request: ``reason`` is the x402 reason string."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def authorization_used() -> PaymentRejected:
    """An authorization that already pays (or is paying) for another request here."""
    return PaymentRejected(
        NONCE_ALREADY_USED, "this authorization already pays (or is paying) for another request"
    )


class X402Required(PaymentRequired):
    """402 carrying the payment requirements: the v2 PaymentRequired object (header, MCP) and
    the body, which also carries the v1 ``accepts`` array."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        payment_required: dict[str, Any],
        body: dict[str, Any],
    ) -> None:
        super().__init__(message, code="payment_required", reason=reason)
        self.reason = reason
        self.payment_required = payment_required
        self.body = body


class MalformedPayment(BadRequest):
    code = "invalid_payment_header"


class SanctionedPayer(Forbidden):
    code = "sanctioned_payer"


class PaymentNetworkUnavailable(ServiceUnavailable):
    code = "payment_network_unavailable"


class Unconfirmed(Exception):
    """A settlement transaction was sent (``tx_hash``) but not confirmed in time: its outcome
    is the chain's to tell, later."""

    def __init__(self, tx_hash: str) -> None:
        super().__init__(f"settlement {tx_hash} is not confirmed yet")
        self.tx_hash = tx_hash


class PaymentUnconfirmed(Exception):
    """An accepted payment whose settlement is not confirmed yet: its reservation
    (``payment_id``) stays until the chain decides (``X402.resolve``)."""

    def __init__(self, payment_id: str, version: int, receipt: dict[str, Any]) -> None:
        super().__init__("the settlement is not confirmed yet")
        self.payment_id = payment_id
        self.version = version
        self.receipt = receipt
        """The x402 SettleResponse: ``success`` false, ``errorReason`` settlement_pending."""


class SettlementPending(GpubridgeError):
    """The request waits for its settlement (202): its job runs once the transfer is
    confirmed, or its reservation is released if the transfer never lands."""

    code = SETTLEMENT_PENDING
    status = 202

    def __init__(self, message: str, *, version: int, receipt: dict[str, Any], **details: Any):
        super().__init__(message, **details)
        self.version = version
        self.receipt = receipt
