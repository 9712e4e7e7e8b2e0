"""What the official x402 SDK sends decodes into our payments, what we send decodes with the
SDK, and anything malformed is a 400."""

from __future__ import annotations

import base64
import json
import os

import pytest
from eth_account import Account
from x402.http import (
    decode_payment_required_header,
    decode_payment_response_header,
    encode_payment_signature_header,
)
from x402.http.x402_http_client_base import x402HTTPClientBase
from x402.mechanisms.evm.exact.client import ExactEvmScheme
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements
from x402.schemas.v1 import PaymentRequiredV1

from gpubridge.payments.x402 import codec
from gpubridge.payments.x402.codec import ExactPayment, TxHashPayment
from gpubridge.payments.x402.config import X402Config
from gpubridge.payments.x402.errors import MalformedPayment
from gpubridge.payments.x402.requirements import Offer, challenge_body, payment_required
from gpubridge.settings import Settings
from tests.support.gateway_app import TEST_RECIPIENT

CONFIG = X402Config.from_settings(Settings(x402_pay_to=TEST_RECIPIENT))
OFFER = Offer(3000, "https://api.example/run", "LLM Inference (llm-4090) job")


def test_an_sdk_v2_payment_header_decodes_into_an_exact_payment():
    payer = Account.create()
    requirements = PaymentRequirements.model_validate(
        payment_required(CONFIG, OFFER, "Payment required")["accepts"][0]
    )
    inner = ExactEvmScheme(EthAccountSigner(payer)).create_payment_payload(requirements)
    header = encode_payment_signature_header(PaymentPayload(payload=inner, accepted=requirements))

    payment = codec.decode_header(header)
    assert isinstance(payment, ExactPayment)
    assert payment.version == 2 and payment.scheme == "exact"
    assert payment.network == "eip155:8453"
    assert payment.payer == payer.address.lower()
    auth = payment.authorization
    assert auth.to == CONFIG.pay_to.lower() and auth.value == 3000
    assert len(auth.nonce) == 32 and len(payment.signature) == 65
    assert payment.accepted is not None and payment.accepted["amount"] == "3000"


def test_the_document_proof_decodes_into_a_tx_hash_payment():
    tx_hash = "0x" + os.urandom(32).hex()
    payer = "0x" + os.urandom(20).hex()
    header = base64.b64encode(json.dumps({"txHash": tx_hash, "from": payer}).encode()).decode()
    assert codec.decode_header(header) == TxHashPayment(tx_hash, payer, None)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "%%%",
        base64.b64encode(b"[1, 2]").decode(),
        codec.encode_json({"x402Version": "2"}),
        codec.encode_json({"x402Version": 3, "payload": {}}),
        codec.encode_json({"x402Version": 2, "payload": {}, "accepted": {"scheme": "exact"}}),
        codec.encode_json({"txHash": "0x12", "from": "0x" + "11" * 20}),
        codec.encode_json({"txHash": "0x" + "11" * 32, "from": "0x" + "11" * 20, "x": 1}),
        "A" * (codec.MAX_HEADER_CHARS + 4),
    ],
)
def test_malformed_headers_are_refused_with_a_clear_error(value):
    with pytest.raises(MalformedPayment) as caught:
        codec.decode_header(value)
    assert caught.value.status == 400 and caught.value.code == "invalid_payment_header"


@pytest.mark.parametrize(
    "text", ["[" * 65 + "]" * 65, '{"x402Version": ' + "9" * 4301 + "}", '{"a": "\\ud800"}']
)
def test_a_header_nested_too_deep_or_with_a_huge_integer_is_malformed(text):
    value = base64.b64encode(text.encode()).decode()
    with pytest.raises(MalformedPayment) as caught:
        codec.decode_json(value)
    assert caught.value.status == 400 and caught.value.code == "invalid_payment_header"


def test_an_authorization_with_out_of_range_numbers_is_malformed():
    document = {
        "x402Version": 1,
        "scheme": "exact",
        "network": "base",
        "payload": {
            "authorization": {
                "from": "0x" + "11" * 20,
                "to": "0x" + "22" * 20,
                "value": str(2**256),
                "validAfter": "0",
                "validBefore": "1",
                "nonce": "0x" + "00" * 32,
            },
            "signature": "0x" + "00" * 65,
        },
    }
    with pytest.raises(MalformedPayment):
        codec.from_object(document)


def test_the_sdk_reads_our_challenge_from_the_header_and_a_v1_client_from_the_body():
    v2 = payment_required(CONFIG, OFFER, "Payment required")
    body = challenge_body(CONFIG, OFFER, "Payment required", "pay please", v2)
    header = codec.encode_json(v2)

    parsed = decode_payment_required_header(header)
    assert isinstance(parsed, PaymentRequired)
    assert parsed.accepts[0].amount == "3000"
    assert parsed.accepts[0].extra == {"name": "USD Coin", "version": "2"}
    assert parsed.resource is not None and parsed.resource.url == OFFER.resource

    client = x402HTTPClientBase()
    assert isinstance(
        client.get_payment_required_response(lambda name: None, body), PaymentRequiredV1
    )
    v1 = PaymentRequiredV1.model_validate(body)
    assert v1.accepts[0].max_amount_required == "3000"
    assert v1.accepts[0].network == "base" and v1.accepts[0].pay_to == CONFIG.pay_to


def test_our_payment_response_decodes_with_the_sdk():
    receipt = {
        "success": True,
        "transaction": "0x" + "ab" * 32,
        "network": "eip155:8453",
        "payer": "0x" + "11" * 20,
        "amount": "3000",
    }
    decoded = decode_payment_response_header(codec.encode_json(receipt))
    assert decoded.success and decoded.transaction == receipt["transaction"]


def test_the_payment_identifier_is_read_and_checked_as_the_x402_sdk_defines_it():
    from x402.extensions.payment_identifier import (
        declare_payment_identifier_extension,
        is_valid_payment_id,
    )

    assert codec.payment_identifier_declaration() == declare_payment_identifier_extension()

    def v2(extensions: object) -> dict:
        return {
            "x402Version": 2,
            "accepted": {"scheme": "exact", "network": "eip155:8453"},
            "payload": {
                "authorization": {
                    "from": "0x" + "11" * 20,
                    "to": "0x" + "22" * 20,
                    "value": "1",
                    "validAfter": "0",
                    "validBefore": "9999999999",
                    "nonce": "0x" + "33" * 32,
                },
                "signature": "0x" + "44" * 65,
            },
            "extensions": extensions,
        }

    for identifier in ["pay_7d5d747be160e280", "a" * 128, "short", "a" * 129, "pay 7d5d747be16"]:
        document = v2({"payment-identifier": {"info": {"required": False, "id": identifier}}})
        if is_valid_payment_id(identifier):
            payment = codec.from_object(document)
            assert isinstance(payment, codec.ExactPayment)
            assert payment.identifier == identifier
        else:
            with pytest.raises(MalformedPayment):
                codec.from_object(document)
    declared_only = v2({"payment-identifier": {"info": {"required": False}}, "bazaar": {}})
    assert codec.from_object(declared_only).identifier is None  # type: ignore[union-attr]
    assert codec.from_object(v2(None)).identifier is None  # type: ignore[union-attr]
    with pytest.raises(MalformedPayment):
        codec.from_object(v2([]))


METERED = Offer(3000, "https://api.example/run", "a metered job", upto_facilitator=TEST_RECIPIENT)


def test_only_a_metered_offer_adds_upto_after_exact_for_the_same_ceiling():
    assert [a["scheme"] for a in payment_required(CONFIG, OFFER, "x")["accepts"]] == ["exact"]
    exact, upto = payment_required(CONFIG, METERED, "x")["accepts"]
    assert (exact["scheme"], upto["scheme"]) == ("exact", "upto")
    assert upto["amount"] == exact["amount"] == "3000"
    assert upto["extra"]["facilitatorAddress"] == TEST_RECIPIENT
    assert upto["extra"]["assetTransferMethod"] == "permit2"
    body = challenge_body(CONFIG, METERED, "x", "m", payment_required(CONFIG, METERED, "x"))
    assert [a["scheme"] for a in body["accepts"]] == ["exact"]  # upto is x402 version 2 only


def test_an_sdk_upto_payment_decodes_into_a_permit2_authorization():
    from x402.mechanisms.evm.upto.client import UptoEvmScheme

    payer = Account.create()
    accepted = payment_required(CONFIG, METERED, "x")["accepts"][1]
    requirements = PaymentRequirements.model_validate(accepted)
    inner = UptoEvmScheme(EthAccountSigner(payer)).create_payment_payload(requirements)
    header = encode_payment_signature_header(
        PaymentPayload(x402_version=2, payload=inner, accepted=requirements)
    )
    payment = codec.decode_header(header)
    assert isinstance(payment, codec.UptoPayment)
    auth = payment.authorization
    assert auth.payer == payer.address.lower()
    assert (auth.amount, auth.to, auth.facilitator) == (
        3000,
        TEST_RECIPIENT.lower(),
        TEST_RECIPIENT.lower(),
    )
    assert auth.spender == "0x4020a4f3b7b90cca423b9fabcc0ce57c6c240002"
    assert payment.scheme == "upto" and payment.version == 2


def test_an_upto_payment_with_a_bad_field_is_malformed():
    document = {
        "x402Version": 2,
        "accepted": {"scheme": "upto", "network": CONFIG.network},
        "payload": {"signature": "0x00", "permit2Authorization": {"from": "0x12"}},
    }
    with pytest.raises(MalformedPayment):
        codec.from_object(document)
