"""Metered x402 payments (scheme ``upto``) through ``POST /run`` on a local chain with Permit2:
the official SDK client authorizes the job's ceiling, the server settles what the job used
after it ends, never more, and nothing when the job fails. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from gpubridge.db.tables import x402_payments
from tests.http_api.test_x402 import serving
from tests.support.local_chain import OPERATOR_KEY, LocalChain
from tests.support.x402_app import PROMPT, allow_local_token, b64, unb64


def operator_address() -> str:
    from eth_account import Account

    return str(Account.from_key(OPERATOR_KEY).address)


async def offers(client: httpx.AsyncClient, body: dict[str, Any] = PROMPT) -> dict[str, Any]:
    response = await client.post("/run", json=body)
    assert response.status_code == 402, response.text
    return {a["scheme"]: a for a in unb64(response.headers["payment-required"])["accepts"]}


def sdk_client(chain: LocalChain, payer: Any) -> Any:
    """The x402 SDK client paying with ``upto`` only, the local token allowed."""
    from x402 import x402Client
    from x402.mechanisms.evm.signers import EthAccountSigner
    from x402.mechanisms.evm.upto.client import UptoEvmScheme

    sdk = x402Client()
    sdk.register(f"eip155:{chain.chain_id}", UptoEvmScheme(EthAccountSigner(payer)))
    allow_local_token(sdk, chain)
    return sdk


async def sdk_run(app: Any, chain: LocalChain, payer: Any) -> httpx.Response:
    from x402.http.clients.httpx import x402HttpxClient

    async with (
        serving(app) as base_url,
        x402HttpxClient(sdk_client(chain, payer), base_url=base_url) as client,
    ):
        return await client.post("/run", json=PROMPT)


async def payment_rows(app: Any, payer: Any) -> list[Any]:
    async with app.state.gateway.db.connect() as conn:
        return list(
            await conn.execute(
                select(x402_payments).where(x402_payments.c.payer == payer.address.lower())
            )
        )


async def payment_row(app: Any, payer: Any) -> Any:
    (row,) = await payment_rows(app, payer)
    return row


async def wallet_balance(app: Any, payer: Any) -> int:
    from gpubridge.payments import ledger
    from gpubridge.payments.x402.wallets import find_wallet_account

    account = await find_wallet_account(app.state.gateway.db, payer.address)
    assert account is not None
    async with app.state.gateway.db.connect() as conn:
        return await ledger.available_balance(conn, account.id)


async def test_a_metered_job_is_offered_upto_beside_exact_with_this_server_as_facilitator(paid):
    _, client = paid
    accepts = await offers(client)
    assert set(accepts) == {"exact", "upto"}
    upto = accepts["upto"]
    assert upto["amount"] == accepts["exact"]["amount"]
    assert upto["extra"]["assetTransferMethod"] == "permit2"
    assert upto["extra"]["facilitatorAddress"] == operator_address()
    assert upto["extra"]["name"] == "USD Coin"


async def test_the_catalog_names_both_schemes(paid):
    _, client = paid
    x402 = (await client.get("/catalog")).json()["payments"]["x402"]
    assert x402["schemes"] == ["exact", "upto"] and x402["scheme"] == "exact"


async def test_the_sdk_client_authorizes_the_ceiling_and_is_charged_what_the_job_used(paid, chain):
    app, client = paid
    ceiling = int((await offers(client))["upto"]["amount"])
    payer = chain.new_payer(1_000_000, eth=True)
    chain.approve_permit2(payer)
    before = chain.balance(chain.recipient)

    response = await sdk_run(app, chain, payer)

    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "completed"
    cost = round(job["cost_usd"] * 1_000_000)
    assert 0 < cost < ceiling
    receipt = unb64(response.headers["payment-response"])
    assert receipt["success"] is True
    assert receipt["amount"] == str(cost)
    assert receipt["transaction"].startswith("0x")
    assert chain.balance(payer.address) == 1_000_000 - cost
    assert chain.balance(chain.recipient) == before + cost
    row = await payment_row(app, payer)
    assert (row.kind, row.status, row.amount_micros, row.authorized_micros) == (
        "upto",
        "settled",
        cost,
        ceiling,
    )
    assert await wallet_balance(app, payer) == 0  # the unused rest was taken back
    report = await app.state.gateway.check_ledger()
    assert report.ok, report.summary()


async def test_a_failed_job_settles_nothing_and_leaves_the_authorization_unspent(
    paid, chain, upstream
):
    app, _ = paid
    upstream.behaviour.fail_status = 500
    payer = chain.new_payer(1_000_000, eth=True)
    chain.approve_permit2(payer)

    response = await sdk_run(app, chain, payer)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "failed"
    receipt = unb64(response.headers["payment-response"])
    assert receipt["amount"] == "0" and receipt["transaction"] == ""
    assert chain.balance(payer.address) == 1_000_000
    row = await payment_row(app, payer)
    assert (row.status, row.amount_micros) == ("released", 0)
    assert not chain.permit2_nonce_used(payer.address, int(row.nonce, 16))
    assert await wallet_balance(app, payer) == 0
    assert (await app.state.gateway.check_ledger()).ok


def upto_header(payer: Any, upto: dict[str, Any]) -> dict[str, str]:
    """``PAYMENT-SIGNATURE`` with the SDK upto client's authorization of ``upto``."""
    from x402.mechanisms.evm.signers import EthAccountSigner
    from x402.mechanisms.evm.upto.client import UptoEvmScheme
    from x402.schemas import PaymentRequirements

    scheme = UptoEvmScheme(EthAccountSigner(payer))
    payload = scheme.create_payment_payload(PaymentRequirements.model_validate(upto))
    return {"PAYMENT-SIGNATURE": b64({"x402Version": 2, "accepted": upto, "payload": payload})}


async def test_one_authorization_pays_one_job(paid, chain):
    _, client = paid
    payer = chain.new_payer(1_000_000, eth=True)
    chain.approve_permit2(payer)
    header = upto_header(payer, (await offers(client))["upto"])

    first = await client.post("/run", json=PROMPT, headers=header)
    assert first.status_code == 200, first.text
    again = await client.post("/run", json=PROMPT, headers=header)
    assert again.status_code == 402
    assert again.json()["error"] == "invalid_exact_evm_nonce_already_used"
    cost = round(first.json()["cost_usd"] * 1_000_000)
    assert chain.balance(payer.address) == 1_000_000 - cost


async def test_a_payer_that_has_not_approved_permit2_is_refused_before_any_work(paid, chain):
    app, client = paid
    payer = chain.new_payer(1_000_000, eth=True)
    response = await client.post(
        "/run", json=PROMPT, headers=upto_header(payer, (await offers(client))["upto"])
    )
    assert response.status_code == 402, response.text
    assert response.json()["error"] == "permit2_allowance_required"
    assert await payment_rows(app, payer) == []


async def test_an_upto_payment_for_another_facilitator_or_amount_is_refused(paid, chain):
    _, client = paid
    payer = chain.new_payer(1_000_000, eth=True)
    chain.approve_permit2(payer)
    upto = (await offers(client))["upto"]
    for changed in (
        {"extra": {**upto["extra"], "facilitatorAddress": chain.recipient}},
        {"amount": str(int(upto["amount"]) - 1)},
    ):
        response = await client.post(
            "/run", json=PROMPT, headers=upto_header(payer, {**upto, **changed})
        )
        assert response.status_code == 402, response.text
    assert chain.balance(payer.address) == 1_000_000


async def test_an_openai_chat_completion_paid_with_upto_settles_before_it_answers(paid, chain):
    _, client = paid
    chat = {"model": "llama-3.1-8b-instant", "messages": [{"role": "user", "content": "Hi"}]}
    payer = chain.new_payer(1_000_000, eth=True)
    chain.approve_permit2(payer)
    asked = await client.post("/v1/chat/completions", json=chat)
    assert asked.status_code == 402, asked.text
    accepts = unb64(asked.headers["payment-required"])["accepts"]
    upto = next(a for a in accepts if a["scheme"] == "upto")

    response = await client.post(
        "/v1/chat/completions", json=chat, headers=upto_header(payer, upto)
    )

    assert response.status_code == 200, response.text
    job = (await client.get(f"/status/{response.headers['x-gpubridge-job-id']}")).json()
    cost = round(job["cost_usd"] * 1_000_000)
    assert unb64(response.headers["payment-response"])["amount"] == str(cost)
    assert chain.balance(payer.address) == 1_000_000 - cost


def _mangled(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Hostile variants of a good upto payment: each must be refused, never crash."""
    import copy

    variants = []
    for path, value in [
        (("payload", "signature"), "0x00"),
        (("payload", "signature"), "0x" + "ff" * 65),
        (("payload", "signature"), "0x" + "00" * 200),
        (("payload", "permit2Authorization", "nonce"), str(2**256 - 1)),
        (("payload", "permit2Authorization", "deadline"), "0"),
        (("payload", "permit2Authorization", "deadline"), str(2**256 - 1)),
        (("payload", "permit2Authorization", "permitted", "amount"), "0"),
        (("payload", "permit2Authorization", "permitted", "amount"), str(2**256 - 1)),
        (("payload", "permit2Authorization", "permitted", "token"), "0x" + "00" * 20),
        (("payload", "permit2Authorization", "spender"), "0x" + "11" * 20),
        (("payload", "permit2Authorization", "witness", "validAfter"), str(2**255)),
        (("payload", "permit2Authorization", "from"), "0x" + "00" * 20),
        (("accepted", "network"), "eip155:1"),
        (("accepted", "amount"), "-1"),
        (("accepted", "extra"), None),
    ]:
        variant = copy.deepcopy(document)
        target = variant
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        variants.append(variant)
    return variants


async def test_hostile_upto_payments_are_refused_with_a_4xx_and_charge_nothing(paid, chain):
    app, client = paid
    payer = chain.new_payer(1_000_000, eth=True)
    chain.approve_permit2(payer)
    header = upto_header(payer, (await offers(client))["upto"])
    document = unb64(header["PAYMENT-SIGNATURE"])
    for variant in _mangled(document):
        response = await client.post(
            "/run", json=PROMPT, headers={"PAYMENT-SIGNATURE": b64(variant)}
        )
        assert response.status_code in (400, 402), (variant, response.text)
        assert "error" in response.json()
    assert chain.balance(payer.address) == 1_000_000
    assert await payment_rows(app, payer) == []


async def test_through_a_facilitator_upto_names_its_address_and_it_settles_the_cost(
    database, database_url, tmp_path, upstream, chain
):
    from eth_account import Account

    from tests.support.x402_app import facilitated_app
    from tests.support.x402_facilitator import FACILITATOR_KEY

    async with facilitated_app(chain, database_url, tmp_path, upstream.base_url) as (
        _,
        client,
        facilitator,
    ):
        upto = (await offers(client))["upto"]
        assert upto["extra"]["facilitatorAddress"] == Account.from_key(FACILITATOR_KEY).address
        payer = chain.new_payer(1_000_000, eth=True)
        chain.approve_permit2(payer)
        before = chain.balance(chain.recipient)

        response = await client.post("/run", json=PROMPT, headers=upto_header(payer, upto))

        assert response.status_code == 200, response.text
        cost = round(response.json()["cost_usd"] * 1_000_000)
        receipt = unb64(response.headers["payment-response"])
        assert receipt["amount"] == str(cost) and receipt["transaction"].startswith("0x")
        assert facilitator.state.calls == ["supported", "verify", "settle"]
    assert chain.balance(chain.recipient) == before + cost
    assert chain.balance(payer.address) == 1_000_000 - cost
