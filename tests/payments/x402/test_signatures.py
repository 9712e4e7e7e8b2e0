"""secp256k1 recovery and EIP-191 messages (wallet claims, signed tx-hash proofs): only
signatures valid the way USDC's ecrecover checks them recover."""

from __future__ import annotations

import os

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct

from gpubridge.payments.x402.signatures import SECP256K1_N, personal_message_digest, recover

PAYER = Account.create()


def test_personal_messages_use_the_eip191_prefix():
    message = "gpubridge wallet claim"
    assert personal_message_digest(message) == _hash_eip191_message(encode_defunct(text=message))


def test_only_canonical_65_byte_signatures_recover():
    digest = os.urandom(32)
    signature = bytes(PAYER.unsafe_sign_hash(digest).signature)
    address = PAYER.address.lower()
    assert recover(digest, signature) == address
    assert recover(digest, signature[:64] + bytes([signature[64] - 27])) == address  # v as 0/1
    s = int.from_bytes(signature[32:64], "big")
    high_s = signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([signature[64] ^ 1])
    assert recover(digest, high_s) is None  # malleable twin: USDC refuses it too
    assert recover(digest, signature[:64] + b"\x05") is None
    assert recover(digest, signature[:64]) is None
    assert recover(digest, bytes(65)) is None
