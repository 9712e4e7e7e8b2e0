"""EIP-3009 verification without a chain, by the x402 SDK's ``exact`` scheme code: what
eth-account signs passes, in v1 and v2; each mismatch has its x402 reason; signatures count only
when valid the way USDC's ecrecover checks them."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from gpubridge.payments.x402.codec import Authorization, ExactPayment
from gpubridge.payments.x402.config import X402Config
from gpubridge.payments.x402.errors import PaymentRejected
from gpubridge.payments.x402.requirements import Offer, requirements_v2
from gpubridge.payments.x402.sdk_exact import check
from gpubridge.payments.x402.signatures import SECP256K1_N
from gpubridge.settings import Settings
from tests.support.gateway_app import TEST_RECIPIENT
from tests.support.local_chain import TRANSFER_TYPES

CONFIG = X402Config.from_settings(Settings(x402_pay_to=TEST_RECIPIENT))
OFFER = Offer(3000, "https://api.example/run", "a job")
PAYER = Account.create()


def typed_data(auth: Authorization, chain_id: int = 8453) -> dict:
    return {
        "types": TRANSFER_TYPES,
        "primaryType": "TransferWithAuthorization",
        "domain": {
            "name": "USD Coin",
            "version": "2",
            "chainId": chain_id,
            "verifyingContract": CONFIG.asset,
        },
        "message": {
            "from": auth.payer,
            "to": auth.to,
            "value": auth.value,
            "validAfter": auth.valid_after,
            "validBefore": auth.valid_before,
            "nonce": auth.nonce,
        },
    }


def authorization(**changes) -> Authorization:
    values = {
        "payer": PAYER.address.lower(),
        "to": CONFIG.pay_to.lower(),
        "value": 3000,
        "valid_after": 0,
        "valid_before": int(time.time()) + 300,
        "nonce": os.urandom(32),
    }
    values.update(changes)
    return Authorization(**values)


def signed(auth: Authorization, *, signer=PAYER, chain_id: int = 8453, version: int = 2):
    signature = signer.sign_message(encode_typed_data(full_message=typed_data(auth, chain_id)))
    accepted = requirements_v2(CONFIG, OFFER) if version == 2 else None
    network = CONFIG.network if version == 2 else CONFIG.network_v1
    return ExactPayment(version, "exact", network, auth, bytes(signature.signature), accepted, {})


def test_a_valid_authorization_passes_in_v1_and_v2():
    check(CONFIG, signed(authorization()), OFFER, time.time())
    check(CONFIG, signed(authorization(), version=1), OFFER, time.time())


@pytest.mark.parametrize(
    ("payment", "reason"),
    [
        (lambda: signed(authorization(), signer=Account.create()), "signature"),
        (lambda: signed(authorization(), chain_id=84532), "signature"),
        (lambda: signed(authorization(to="0x" + "22" * 20)), "recipient_mismatch"),
        (lambda: signed(authorization(value=2999)), "authorization_value_mismatch"),
        (lambda: signed(authorization(valid_before=int(time.time()))), "valid_before"),
        (
            lambda: signed(authorization(valid_after=int(time.time()) + 60)),
            "authorization_valid_after",
        ),
        (lambda: replace(signed(authorization()), scheme="upto"), "unsupported_scheme"),
        (lambda: replace(signed(authorization()), network="eip155:1"), "network_mismatch"),
        (
            lambda: replace(
                signed(authorization()),
                accepted={**requirements_v2(CONFIG, OFFER), "asset": "0x" + "33" * 20},
            ),
            "invalid_payment_requirements",
        ),
        (
            lambda: replace(
                signed(authorization()),
                accepted={**requirements_v2(CONFIG, OFFER), "amount": "1"},
            ),
            "authorization_value_mismatch",
        ),
    ],
)
def test_each_mismatch_is_refused_with_its_reason(payment, reason):
    with pytest.raises(PaymentRejected) as caught:
        check(CONFIG, payment(), OFFER, time.time())
    assert caught.value.reason.endswith(reason)


def test_only_canonical_65_byte_signatures_pass():
    good = signed(authorization())
    check(
        CONFIG,
        replace(good, signature=good.signature[:64] + bytes([good.signature[64] - 27])),
        OFFER,
        time.time(),
    )
    s = int.from_bytes(good.signature[32:64], "big")
    high_s = (
        good.signature[:32]
        + (SECP256K1_N - s).to_bytes(32, "big")
        + bytes([good.signature[64] ^ 1])
    )
    for signature in [high_s, good.signature[:64] + b"\x05", good.signature[:64], bytes(65)]:
        with pytest.raises(PaymentRejected) as caught:
            check(CONFIG, replace(good, signature=signature), OFFER, time.time())
        assert caught.value.reason == "invalid_exact_evm_payload_signature"
