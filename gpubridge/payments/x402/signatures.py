"""secp256k1 signatures: recover the signing address of a digest, and EIP-191
``personal_sign`` messages (wallet claims, signed tx-hash proofs). EIP-3009 authorizations are
checked by the x402 SDK (``sdk_exact``).

Imported only when a payment or a claim is checked (it loads the Ethereum libraries).
"""

from __future__ import annotations

from gpubridge.recursion import keep_recursion_limit

with keep_recursion_limit():  # the Ethereum libraries may raise it process-wide on import
    from eth_hash.auto import keccak
    from eth_keys.datatypes import Signature
    from eth_keys.exceptions import BadSignature
    from eth_utils.exceptions import ValidationError

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def personal_message_digest(message: str) -> bytes:
    """The EIP-191 (version 0x45, ``personal_sign``) digest of a text message."""
    data = message.encode()
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data)


def recover(digest: bytes, signature: bytes) -> str | None:
    """The lowercase address that signed ``digest``, or None for an invalid signature.

    Only 65-byte ``r || s || v`` signatures with ``v`` in {0, 1, 27, 28} and a low ``s`` (as
    USDC's ``ecrecover`` accepts them) are valid.
    """
    if len(signature) != 65:
        return None
    v = signature[64]
    if v >= 27:
        v -= 27
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if v not in (0, 1) or not 0 < r < SECP256K1_N or not 0 < s <= SECP256K1_N // 2:
        return None
    try:
        public_key = Signature(vrs=(v, r, s)).recover_public_key_from_msg_hash(digest)
    except (BadSignature, ValidationError, ValueError):
        return None
    return "0x" + public_key.to_canonical_address().hex()
