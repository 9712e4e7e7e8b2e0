"""The x402 SDK's ``exact`` EVM scheme as the engine of the checks an ``exact`` (EIP-3009)
payment needs no chain for.

gpubridge frames the payment (x402 version, scheme, the network's name in that version, the
accepted requirements against this server's terms); the SDK's scheme code does the rest, in
the order and with the reasons of its facilitator's ``verify``: recipient, exact amount, time
window (valid for 6 more seconds), then the EIP-712 digest of ``TransferWithAuthorization``
(``hash_eip3009_authorization``) and the signer's recovery (``verify_eoa_signature``).

The chain-side checks (nonce unused, balance) follow in settlement, behind gpubridge's
reservation and ledger; the token contract enforces all of them again when the authorization
is settled. Signatures by contract wallets (EIP-1271, ERC-6492), which need the chain to
verify, are refused as invalid.

The SDK (and the Ethereum libraries under it) is imported with the first payment checked.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from gpubridge.payments.x402 import errors
from gpubridge.payments.x402.codec import ExactPayment
from gpubridge.payments.x402.config import X402Config, same_address
from gpubridge.payments.x402.errors import PaymentRejected
from gpubridge.payments.x402.requirements import SCHEME_EXACT, Offer, check_stated
from gpubridge.recursion import keep_recursion_limit


@cache
def _sdk() -> Any:
    with keep_recursion_limit():  # the Ethereum libraries may raise it process-wide on import
        from x402.mechanisms.evm import constants, eip712, types, verify

    return constants, eip712, types, verify


def check(config: X402Config, payment: ExactPayment, offer: Offer, now: float) -> None:
    """Raise ``PaymentRejected`` unless ``payment`` pays exactly ``offer`` to this server."""
    if payment.scheme != SCHEME_EXACT:
        raise PaymentRejected(errors.UNSUPPORTED_SCHEME, f"scheme {payment.scheme!r} is not paid")
    network = config.network if payment.version == 2 else config.network_v1
    if payment.network != network:
        raise PaymentRejected(
            errors.NETWORK_MISMATCH, f"payments are on {network}, not {payment.network}"
        )
    if payment.accepted is not None:
        check_stated(config, payment.accepted, offer)
    constants, eip712, types, verify = _sdk()
    auth = payment.authorization
    if not same_address(auth.to, config.pay_to):
        raise PaymentRejected(
            constants.ERR_RECIPIENT_MISMATCH, f"the authorization must pay {config.pay_to}"
        )
    if auth.value != offer.amount_micros:
        raise PaymentRejected(
            constants.ERR_AUTHORIZATION_VALUE_MISMATCH,
            f"the authorization must be for exactly {offer.amount_micros} atomic units",
        )
    if auth.valid_before < int(now) + 6:
        raise PaymentRejected(constants.ERR_VALID_BEFORE_EXPIRED, "the authorization has expired")
    if auth.valid_after > int(now):
        raise PaymentRejected(
            constants.ERR_VALID_AFTER_FUTURE, "the authorization is not valid yet"
        )
    authorization = types.ExactEIP3009Authorization(
        from_address=auth.payer,
        to=auth.to,
        value=str(auth.value),
        valid_after=str(auth.valid_after),
        valid_before=str(auth.valid_before),
        nonce="0x" + auth.nonce.hex(),
    )
    digest = eip712.hash_eip3009_authorization(
        authorization, config.chain_id, config.asset, config.asset_name, config.asset_version
    )
    try:
        valid = verify.verify_eoa_signature(digest, payment.signature, auth.payer)
    except ValueError:  # not 65 bytes, or a v the curve has no recovery for
        valid = False
    if not valid or not _low_s(payment.signature):
        raise PaymentRejected(
            constants.ERR_INVALID_SIGNATURE,
            "the signature does not recover to the authorization's from",
        )


SECP256K1_HALF_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 // 2


def _low_s(signature: bytes) -> bool:
    """USDC's ``ecrecover`` path refuses high-``s`` signatures (EIP-2): so do we, before a
    settlement that would revert."""
    return 0 < int.from_bytes(signature[32:64], "big") <= SECP256K1_HALF_N
