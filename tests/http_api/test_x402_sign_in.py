"""Sign-in with a wallet (the x402 ``sign-in-with-x`` extension) on a local chain: a returning
payer spends its wallet account's credit without a new payment, with the official SDK client
over uvicorn; each signed message is used once; a wallet without credit is asked to pay. On
SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from gpubridge.payments import ledger
from gpubridge.payments.x402.wallets import find_wallet_account
from tests.http_api.test_x402 import serving, wallet_state
from tests.support.x402_app import PROMPT, allow_local_token, unb64


async def credit(database, address: str, micros: int) -> None:
    account = await find_wallet_account(database, address)
    assert account is not None
    async with database.begin() as conn:
        await ledger.credit(conn, account.id, micros, house="grants", kind="grant", memo="test")


async def available(database, address: str) -> int:
    """The wallet account's balance, read from the ledger (a claim per read would be refused
    within the same second)."""
    account = await find_wallet_account(database, address)
    assert account is not None
    async with database.connect() as conn:
        return await ledger.available_balance(conn, account.id)


async def sign_in_header(client: Any, payer: Any, host: str = "gpubridge.test") -> str:
    """A ``SIGN-IN-WITH-X`` header answering the 402's challenge, signed by the SDK (as another
    server ``host`` would have asked for it)."""
    from x402.extensions.sign_in_with_x import create_siwx_payload, encode_siwx_header

    required = unb64((await client.post("/run", json=PROMPT)).headers["payment-required"])
    declared = required["extensions"]["sign-in-with-x"]
    chain = declared["supportedChains"][0]
    url = f"http://{host}/run"
    info = {**declared["info"], "chainId": chain["chainId"], "type": chain["type"]}
    info.update(domain=host, uri=url, resources=[url])
    return str(encode_siwx_header(await create_siwx_payload(info, payer, url)))


async def test_a_returning_payer_signs_in_with_the_sdk_client_and_spends_its_credit(
    paid, chain, database
):
    from x402 import x402Client
    from x402.extensions.sign_in_with_x import (
        CreateSIWxClientExtensionOptions,
        create_siwx_client_extension,
    )
    from x402.http.clients.httpx import x402HttpxClient
    from x402.mechanisms.evm.exact import register_exact_evm_client
    from x402.mechanisms.evm.signers import EthAccountSigner

    app, client = paid
    payer = chain.new_payer(1_000_000)
    sdk = x402Client()
    register_exact_evm_client(sdk, EthAccountSigner(payer))
    sdk.register_extension(
        create_siwx_client_extension(CreateSIWxClientExtensionOptions(signers=[payer]))
    )
    allow_local_token(sdk, chain)
    async with serving(app) as base_url, x402HttpxClient(sdk, base_url=base_url) as http:
        # A first visit: no wallet account yet, so the sign-in is answered 402 and it pays.
        first = await http.post("/run", json=PROMPT)
        assert first.status_code == 200, first.text
        assert "payment-response" in first.headers
        on_chain = chain.balance(payer.address)
        await credit(database, payer.address, 10_000)
        before = await available(database, payer.address)

        # Back with credit: it signs in and the job is charged on its wallet account.
        second = await http.post("/run", json=PROMPT)
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "completed"
    assert "payment-response" not in second.headers
    assert chain.balance(payer.address) == on_chain  # no new payment
    after = await available(database, payer.address)
    assert after == before - round(second.json()["cost_usd"] * 1_000_000)
    _, jobs = await wallet_state(client, payer)
    assert len(jobs) == 2


async def test_a_signed_message_spends_the_credit_once(paid, chain, database):
    _, client = paid
    payer = chain.new_payer(0)
    header = await sign_in_header(client, payer)
    refused = await client.post("/run", json=PROMPT, headers={"SIGN-IN-WITH-X": header})
    assert refused.status_code == 402  # no wallet account: pay first
    assert refused.json()["error"] == "insufficient_wallet_credit"

    # Once the wallet has an account with credit, a fresh message signs in, once.
    await find_or_create_wallet(database, payer.address)
    await credit(database, payer.address, 100_000)
    header = await sign_in_header(client, payer)
    ran = await client.post("/run", json=PROMPT, headers={"SIGN-IN-WITH-X": header})
    assert ran.status_code == 200, ran.text
    replayed = await client.post("/run", json=PROMPT, headers={"SIGN-IN-WITH-X": header})
    assert replayed.status_code == 402
    assert replayed.json()["error"] == "invalid_siwx_nonce_used"
    _, jobs = await wallet_state(client, payer)
    assert len(jobs) == 1


async def test_a_message_signed_for_another_server_or_garbled_does_not_sign_in(paid, chain):
    _, client = paid
    payer = chain.new_payer(0)
    elsewhere = await sign_in_header(client, payer, "elsewhere.test")
    for header, reason in [
        (elsewhere, "invalid_siwx_"),
        ("not base64!", "invalid_siwx_payload"),
    ]:
        response = await client.post("/run", json=PROMPT, headers={"SIGN-IN-WITH-X": header})
        assert response.status_code == 402
        assert response.json()["error"].startswith(reason)


async def find_or_create_wallet(database, address: str) -> None:
    from gpubridge.payments.x402.wallets import ensure_wallet_account

    await ensure_wallet_account(database, address)
