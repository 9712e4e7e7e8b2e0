"""The sign-in-with-x challenge and its checks, on SQLite and PostgreSQL: a fresh challenge per
402 for HTTP resources only, and a signed answer is this server's wallet once, on its chain."""

from __future__ import annotations

import pytest
from eth_account import Account
from x402.extensions.sign_in_with_x import create_siwx_payload, encode_siwx_header

from gpubridge.payments.x402 import sign_in
from gpubridge.payments.x402.config import X402Config
from gpubridge.payments.x402.errors import PaymentRejected
from gpubridge.settings import Settings
from tests.support.gateway_app import TEST_RECIPIENT

CONFIG = X402Config.from_settings(Settings(x402_pay_to=TEST_RECIPIENT))
RESOURCE = "https://gpu.example.com/run"


async def answer(declared: dict, signer, chain_id: str | None = None) -> str:
    supported = declared["supportedChains"][0]
    info = {
        **declared["info"],
        "chainId": chain_id or supported["chainId"],
        "type": supported["type"],
    }
    return str(encode_siwx_header(await create_siwx_payload(info, signer, RESOURCE)))


def test_each_challenge_is_fresh_and_only_http_resources_get_one():
    first = sign_in.declaration(CONFIG, RESOURCE)
    second = sign_in.declaration(CONFIG, RESOURCE)
    assert first is not None and second is not None
    assert first["info"]["domain"] == "gpu.example.com"
    assert first["info"]["uri"] == RESOURCE
    assert first["info"]["nonce"] != second["info"]["nonce"]
    assert first["supportedChains"] == [{"chainId": "eip155:8453", "type": "eip191"}]
    assert sign_in.declaration(CONFIG, "mcp://tool/llm-4090") is None


async def test_a_signed_answer_is_the_wallet_once_and_only_on_this_chain(database):
    wallet = Account.create()
    declared = sign_in.declaration(CONFIG, RESOURCE)
    assert declared is not None
    header = await answer(declared, wallet)
    assert await sign_in.signed_in(database, CONFIG, header, RESOURCE) == wallet.address.lower()
    with pytest.raises(PaymentRejected) as used:
        await sign_in.signed_in(database, CONFIG, header, RESOURCE)
    assert used.value.reason == sign_in.NONCE_USED

    other_chain = await answer(sign_in.declaration(CONFIG, RESOURCE) or {}, wallet, "eip155:1")
    with pytest.raises(PaymentRejected) as wrong:
        await sign_in.signed_in(database, CONFIG, other_chain, RESOURCE)
    assert wrong.value.reason == sign_in.WRONG_CHAIN
    with pytest.raises(PaymentRejected):
        await sign_in.signed_in(database, CONFIG, header, "mcp://tool/llm-4090")
