"""secp256k1 signatures: recover the signing address of a digest, EIP-712 typed data for
EIP-3009, and EIP-191 ``personal_sign`` messages.

Imported only when a payment or a claim is checked (it loads the Ethereum libraries).
"""

from __future__ import annotations

from gpubridge.payments.x402.codec import Authorization
from gpubridge.recursion import keep_recursion_limit

with keep_recursion_limit():  # the Ethereum libraries may raise it process-wide on import
    from eth_hash.auto import keccak
    from eth_keys.datatypes import Signature
    from eth_keys.exceptions import BadSignature
    from eth_utils.exceptions import ValidationError

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_TRANSFER_TYPEHASH = keccak(
    b"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
    b"uint256 validBefore,bytes32 nonce)"
)


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address.removeprefix("0x"))


def domain_separator(name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    """The EIP-712 domain separator of a token (name, version, chainId, verifyingContract)."""
    return keccak(
        _DOMAIN_TYPEHASH
        + keccak(name.encode())
        + keccak(version.encode())
        + _word(chain_id)
        + _address_word(verifying_contract)
    )


def authorization_digest(domain: bytes, auth: Authorization) -> bytes:
    """The EIP-712 digest a payer signs for ``transferWithAuthorization``."""
    struct_hash = keccak(
        _TRANSFER_TYPEHASH
        + _address_word(auth.payer)
        + _address_word(auth.to)
        + _word(auth.value)
        + _word(auth.valid_after)
        + _word(auth.valid_before)
        + auth.nonce
    )
    return keccak(b"\x19\x01" + domain + struct_hash)


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
