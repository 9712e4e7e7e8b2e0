"""Checks of an ``exact`` (EIP-3009) payment that need no chain: scheme, network, the accepted
requirements, recipient, amount, time window and the payer's EIP-712 signature.

The chain-side checks (nonce unused, balance) follow in settlement; the token contract enforces
all of them again when the authorization is settled.
"""

from __future__ import annotations

from functools import lru_cache

from gpubridge.payments.x402 import errors
from gpubridge.payments.x402.codec import ExactPayment
from gpubridge.payments.x402.config import X402Config, same_address
from gpubridge.payments.x402.errors import PaymentRejected
from gpubridge.payments.x402.requirements import SCHEME_EXACT, Offer
from gpubridge.payments.x402.signatures import authorization_digest, domain_separator, recover

VALID_BEFORE_MARGIN_S = 6
"""An authorization must stay valid this long after it is checked (the SDK's buffer)."""


@lru_cache(maxsize=8)
def _domain(name: str, version: str, chain_id: int, asset: str) -> bytes:
    return domain_separator(name, version, chain_id, asset)


def check_exact(config: X402Config, payment: ExactPayment, offer: Offer, now: float) -> None:
    """Raise ``PaymentRejected`` unless ``payment`` pays exactly ``offer`` to this server."""
    if payment.scheme != SCHEME_EXACT:
        raise PaymentRejected(errors.UNSUPPORTED_SCHEME, f"scheme {payment.scheme!r} is not paid")
    network = config.network if payment.version == 2 else config.network_v1
    if payment.network != network:
        raise PaymentRejected(
            errors.NETWORK_MISMATCH, f"payments are on {network}, not {payment.network}"
        )
    if payment.accepted is not None:
        _check_accepted(config, payment.accepted, offer)
    auth = payment.authorization
    if not same_address(auth.to, config.pay_to):
        raise PaymentRejected(
            errors.RECIPIENT_MISMATCH, f"the authorization must pay {config.pay_to}"
        )
    if auth.value != offer.amount_micros:
        raise PaymentRejected(
            errors.VALUE_MISMATCH,
            f"the authorization must be for exactly {offer.amount_micros} atomic units",
        )
    if auth.valid_before < now + VALID_BEFORE_MARGIN_S:
        raise PaymentRejected(errors.VALID_BEFORE_EXPIRED, "the authorization has expired")
    if auth.valid_after > now:
        raise PaymentRejected(errors.VALID_AFTER_FUTURE, "the authorization is not valid yet")
    domain = _domain(config.asset_name, config.asset_version, config.chain_id, config.asset)
    signer = recover(authorization_digest(domain, auth), payment.signature)
    if signer is None or signer != auth.payer:
        raise PaymentRejected(
            errors.INVALID_SIGNATURE, "the signature does not recover to the authorization's from"
        )


def _check_accepted(config: X402Config, accepted: dict[str, object], offer: Offer) -> None:
    asset = accepted.get("asset")
    pay_to = accepted.get("payTo")
    if not isinstance(asset, str) or not same_address(asset, config.asset):
        raise PaymentRejected(errors.REQUIREMENTS_MISMATCH, f"the asset must be {config.asset}")
    if not isinstance(pay_to, str) or not same_address(pay_to, config.pay_to):
        raise PaymentRejected(errors.RECIPIENT_MISMATCH, f"payTo must be {config.pay_to}")
    if accepted.get("amount") != str(offer.amount_micros):
        raise PaymentRejected(
            errors.VALUE_MISMATCH, f"this request costs {offer.amount_micros} atomic units"
        )
