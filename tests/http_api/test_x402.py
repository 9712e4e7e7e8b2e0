"""x402 through POST /run on a local chain: the challenge, v1 and v2 ``exact`` payments end to
end, every refusal, concurrency, screening, failed jobs and wallet claims, and the official
x402 SDK client. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import uvicorn
from sqlalchemy import select

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import x402_payments
from gpubridge.payments.x402.wallets import claim_message
from tests.support.gateway_app import auth
from tests.support.local_chain import personal_sign
from tests.support.x402_app import (
    PROMPT,
    allow_local_token,
    b64,
    challenge,
    claim_key,
    facilitated_app,
    now,
    paid_app,
    unb64,
    v1_header,
    v2_header,
)

SERVER = "http://gpubridge.test"


async def wallet_state(client: httpx.AsyncClient, payer: Any) -> tuple[int, list[dict[str, Any]]]:
    """(balance in micro-USD, job history) of the payer's wallet account."""
    key = await claim_key(client, payer)
    balance = (await client.get("/account/balance", headers=auth(key))).json()["balance"]
    jobs = (await client.get("/account/jobs", headers=auth(key))).json()["jobs"]
    return round(balance * 1_000_000), jobs


async def no_wallet_account(client: httpx.AsyncClient, payer: Any) -> bool:
    message = claim_message(payer.address, SERVER, utcnow())
    body = {
        "address": payer.address,
        "message": message,
        "signature": personal_sign(payer, message),
    }
    response = await client.post("/account/wallet/claim", json=body)
    return response.status_code == 404 and response.json()["error"]["code"] == "wallet_not_found"


# -- the challenge --------------------------------------------------------------------------
async def test_an_unpaid_run_gets_402_with_v2_requirements_in_the_header_and_v1_in_the_body(
    paid, chain
):
    _, client = paid
    estimate = (
        await client.get(
            "/catalog/estimate",
            params={"service": "llm-4090", "input": json.dumps(PROMPT["input"])},
        )
    ).json()
    price = round(estimate["ceiling_cost_usd"] * 1_000_000)  # the most the job can cost

    response = await client.post("/run", json=PROMPT)
    assert response.status_code == 402
    assert response.headers["cache-control"] == "no-store"
    v2 = unb64(response.headers["payment-required"])
    assert v2["x402Version"] == 2
    assert v2["resource"] == {
        "url": f"{SERVER}/run",
        "description": "LLM Inference (llm-4090) job",
        "mimeType": "application/json",
        "serviceName": "gpubridge",
        "tags": ["ai", "inference", "llm", "image-generation", "speech"],
    }
    assert v2["extensions"]["bazaar"]["info"]["input"]["body"]["service"] == "llm-4090"
    assert [a["scheme"] for a in v2["accepts"]] == ["exact", "upto"]  # metered: both offered
    assert v2["accepts"][:1] == [
        {
            "scheme": "exact",
            "network": f"eip155:{chain.chain_id}",
            "amount": str(price),
            "asset": chain.usdc.address,
            "payTo": chain.recipient,
            "maxTimeoutSeconds": 300,
            "extra": {"name": "USD Coin", "version": "2"},
        }
    ]
    body = response.json()
    assert body["x402Version"] == 1
    assert body["paymentRequired"] == v2
    assert body["accepts"][0].pop("outputSchema")["input"]["method"] == "POST"
    assert body["accepts"] == [
        {
            "scheme": "exact",
            "network": "local",
            "maxAmountRequired": str(price),
            "resource": f"{SERVER}/run",
            "description": "LLM Inference (llm-4090) job",
            "mimeType": "application/json",
            "payTo": chain.recipient,
            "maxTimeoutSeconds": 300,
            "asset": chain.usdc.address,
            "extra": {"name": "USD Coin", "version": "2"},
        }
    ]


async def test_with_the_recipient_set_the_default_terms_are_base_mainnet_usdc_as_the_document_says(
    database, database_url, tmp_path, upstream
):
    from tests.support.gateway_app import running_app, settings_for
    from tests.support.x402_app import upstream_catalog

    catalog = upstream_catalog(tmp_path / "catalog.yaml", upstream.base_url)
    # The operator names the recipient (here the document's); everything else is the default.
    recipient = "0xB0FdC6030B9f30652e8B221B8090d443Dd3C6381"
    settings = settings_for(database_url, tmp_path, catalog, x402_pay_to=recipient)
    async with running_app(settings) as (_, client):
        body = {"service": "llm-4090", "input": {"prompt": "Hello world", "max_tokens": 16}}
        response = await client.post("/run", json=body)
    assert response.status_code == 402
    accepts = response.json()["accepts"][0]
    assert accepts["network"] == "base"
    assert accepts["maxAmountRequired"] == "3000"
    assert accepts["payTo"] == "0xB0FdC6030B9f30652e8B221B8090d443Dd3C6381"
    assert accepts["asset"] == "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    assert accepts["maxTimeoutSeconds"] == 300
    v2 = unb64(response.headers["payment-required"])["accepts"][0]
    assert v2["network"] == "eip155:8453" and v2["amount"] == "3000"


async def test_invalid_input_is_a_422_before_any_payment_is_asked(paid):
    _, client = paid
    body = {"service": "llm-4090", "input": {"prompt": 5}}
    assert (await client.post("/run", json=body)).status_code == 422
    assert (await client.post("/run", json=body, headers={"X-PAYMENT": "@@"})).status_code == 422


# -- happy paths ----------------------------------------------------------------------------
async def test_a_v2_payment_settles_on_chain_runs_the_job_and_credits_the_excess(paid, chain):
    _, client = paid
    accepted = await challenge(client)
    price = int(accepted["amount"])
    payer = chain.new_payer(price * 2)
    before = chain.balance(chain.recipient)

    response = await client.post("/run", json=PROMPT, headers=v2_header(chain, payer, accepted))
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "completed" and job["output"]["text"]
    receipt = unb64(response.headers["payment-response"])
    assert receipt["success"] is True
    assert receipt["network"] == f"eip155:{chain.chain_id}"
    assert receipt["payer"] == payer.address.lower()
    assert receipt["amount"] == str(price)
    tx = chain.w3.eth.get_transaction_receipt(receipt["transaction"])
    assert tx["status"] == 1
    assert chain.balance(chain.recipient) == before + price
    assert chain.balance(payer.address) == price

    cost = round(job["cost_usd"] * 1_000_000)
    assert 0 < cost < price
    balance, jobs = await wallet_state(client, payer)
    assert [j["id"] for j in jobs] == [job["id"]]
    assert balance == price - cost  # the excess over the actual cost is the wallet's


async def test_a_v1_payment_in_x_payment_runs_the_job_and_answers_x_payment_response(paid, chain):
    _, client = paid
    price = int((await challenge(client))["amount"])
    payer = chain.new_payer(price)
    before = chain.balance(chain.recipient)

    response = await client.post("/run", json=PROMPT, headers=v1_header(chain, payer, price))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    receipt = unb64(response.headers["x-payment-response"])
    assert receipt["success"] is True and receipt["network"] == "local"
    assert "payment-response" not in response.headers
    assert chain.balance(chain.recipient) == before + price
    assert chain.balance(payer.address) == 0


async def test_an_async_service_answers_202_and_the_payment_response(
    database, database_url, tmp_path, upstream, chain
):
    async with paid_app(chain, database_url, tmp_path, upstream.base_url) as (app, client):
        app.state.gateway.catalog.services["llm-4090"].mode = "async"
        accepted = await challenge(client)
        payer = chain.new_payer(int(accepted["amount"]))
        response = await client.post("/run", json=PROMPT, headers=v2_header(chain, payer, accepted))
        assert response.status_code == 202, response.text
        assert unb64(response.headers["payment-response"])["success"] is True
        job = await app.state.gateway.wait(
            await app.state.gateway.get(response.json()["job_id"]), 10
        )
        assert job.status.value == "completed"


# -- refusals -------------------------------------------------------------------------------
def _stranger_signs(chain, payer, accepted):
    stranger = chain.new_payer()
    payload = chain.authorization(stranger, int(accepted["amount"]))
    payload["authorization"]["from"] = payer.address
    return v2_header(chain, payer, accepted, payload=payload)


def _accepted(changes):
    def build(chain, payer, accepted):
        return v2_header(chain, payer, {**accepted, **changes(chain, accepted)})

    return build


REFUSALS = {
    "bad signature": (_stranger_signs, "invalid_exact_evm_payload_signature"),
    "wrong recipient": (
        lambda c, p, a: v2_header(c, p, a, to=c.new_payer().address),
        "invalid_exact_evm_payload_recipient_mismatch",
    ),
    "wrong amount": (
        lambda c, p, a: v2_header(c, p, a, payload=c.authorization(p, int(a["amount"]) - 1)),
        "invalid_exact_evm_payload_authorization_value_mismatch",
    ),
    "expired": (
        lambda c, p, a: v2_header(c, p, a, valid_before=now() - 10),
        "invalid_exact_evm_payload_authorization_valid_before",
    ),
    "expiring within the margin": (
        lambda c, p, a: v2_header(c, p, a, valid_before=now() + 2),
        "invalid_exact_evm_payload_authorization_valid_before",
    ),
    "not yet valid": (
        lambda c, p, a: v2_header(c, p, a, valid_after=now() + 600),
        "invalid_exact_evm_payload_authorization_valid_after",
    ),
    "signed for another chain": (
        lambda c, p, a: v2_header(c, p, a, chain_id=8453),
        "invalid_exact_evm_payload_signature",
    ),
    "wrong network": (
        _accepted(lambda c, a: {"network": "eip155:8453"}),
        "network_mismatch",
    ),
    "wrong asset": (
        _accepted(lambda c, a: {"asset": c.other.address}),
        "invalid_payment_requirements",
    ),
    "another scheme": (_accepted(lambda c, a: {"scheme": "upto"}), "unsupported_scheme"),
    "v1 on another network": (
        lambda c, p, a: v1_header(c, p, int(a["amount"]), network="base"),
        "network_mismatch",
    ),
}


async def test_a_payment_that_does_not_pay_is_a_402_with_its_reason_and_the_requirements(
    paid, chain
):
    _, client = paid
    accepted = await challenge(client)
    for case, (build, reason) in REFUSALS.items():
        payer = chain.new_payer(int(accepted["amount"]) * 2)
        before = chain.balance(chain.recipient)

        response = await client.post("/run", json=PROMPT, headers=build(chain, payer, accepted))
        assert response.status_code == 402, (case, response.text)
        body = response.json()
        assert body["error"] == reason, case
        assert body["accepts"][0]["maxAmountRequired"] == accepted["amount"]
        again = unb64(response.headers["payment-required"])
        assert again["error"] == reason and again["accepts"][0] == accepted
        assert chain.balance(chain.recipient) == before, case
        assert await no_wallet_account(client, payer), case


async def test_a_nonce_already_used_on_chain_is_refused(paid, chain):
    _, client = paid
    accepted = await challenge(client)
    price = int(accepted["amount"])
    payer = chain.new_payer(price * 2)
    payload = chain.authorization(payer, price)
    chain.settle_directly(payload)  # the authorization is spent elsewhere first

    response = await client.post(
        "/run", json=PROMPT, headers=v2_header(chain, payer, accepted, payload=payload)
    )
    assert response.status_code == 402
    assert response.json()["error"] == "invalid_exact_evm_nonce_already_used"
    assert await no_wallet_account(client, payer)


async def test_a_payer_without_the_funds_is_refused(paid, chain):
    _, client = paid
    accepted = await challenge(client)
    payer = chain.new_payer(int(accepted["amount"]) - 1)
    response = await client.post("/run", json=PROMPT, headers=v2_header(chain, payer, accepted))
    assert response.status_code == 402
    assert response.json()["error"] == "invalid_exact_evm_insufficient_balance"
    assert chain.balance(payer.address) == int(accepted["amount"]) - 1


MALFORMED = [
    {"PAYMENT-SIGNATURE": "not base64!"},
    {"PAYMENT-SIGNATURE": b64({"x402Version": 2})},
    {"X-PAYMENT": "aGVsbG8="},  # base64 of "hello"
    {"X-PAYMENT": b64({"x402Version": 7, "payload": {}})},
    {"X-PAYMENT": b64({"txHash": "0x1234", "from": "0x" + "11" * 20})},
    {"X-PAYMENT": b64({"x402Version": 1, "scheme": "exact", "network": "local"})},
]


async def test_a_malformed_payment_header_is_a_400_and_charges_nothing(paid):
    app, client = paid
    for header in MALFORMED:
        response = await client.post("/run", json=PROMPT, headers=header)
        assert response.status_code == 400, (header, response.text)
        assert response.json()["error"]["code"] == "invalid_payment_header"
    async with app.state.gateway.db.connect() as conn:
        assert (await conn.execute(select(x402_payments.c.id))).all() == []


async def test_a_reverted_settlement_leaves_no_job_and_no_charge(paid, chain):
    app, client = paid
    accepted = await challenge(client)
    payer = chain.new_payer(int(accepted["amount"]))
    chain.blacklist(payer.address)  # the token now reverts its transfers; views still answer
    before = chain.balance(chain.recipient)

    response = await client.post("/run", json=PROMPT, headers=v2_header(chain, payer, accepted))
    assert response.status_code == 402
    assert response.json()["error"] == "transaction_failed"
    assert chain.balance(chain.recipient) == before
    assert chain.balance(payer.address) == int(accepted["amount"])
    assert await no_wallet_account(client, payer)
    async with app.state.gateway.db.connect() as conn:
        rows = (await conn.execute(select(x402_payments.c.status))).scalars().all()
    assert rows == ["failed"]


async def test_exact_payments_need_a_settlement_key_or_facilitator(
    database, database_url, tmp_path, upstream, chain
):
    async with paid_app(
        chain, database_url, tmp_path, upstream.base_url, x402_settlement_key=None
    ) as (_, client):
        accepted = await challenge(client)
        payer = chain.new_payer(int(accepted["amount"]))
        response = await client.post("/run", json=PROMPT, headers=v2_header(chain, payer, accepted))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "payment_network_unavailable"


# -- concurrency -------------------------------------------------------------------------
async def test_one_authorization_sent_50_times_at_once_pays_exactly_one_job(paid, chain):
    _, client = paid
    accepted = await challenge(client)
    price = int(accepted["amount"])
    payer = chain.new_payer(price * 10)
    header = v2_header(chain, payer, accepted)
    transfers = chain.transfer_count(chain.recipient)

    async with asyncio.timeout(120):
        responses = await asyncio.gather(
            *(client.post("/run", json=PROMPT, headers=header) for _ in range(50))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [402] * 49, statuses
    refusals = {r.json()["error"] for r in responses if r.status_code == 402}
    assert refusals == {"invalid_exact_evm_nonce_already_used"}
    assert chain.transfer_count(chain.recipient) == transfers + 1
    assert chain.balance(payer.address) == price * 9
    _, jobs = await wallet_state(client, payer)
    assert len(jobs) == 1


# -- screening ---------------------------------------------------------------------------
async def test_a_payer_on_the_deny_list_is_a_403(database, database_url, tmp_path, upstream, chain):
    payer = chain.new_payer(1_000_000)
    deny_list = tmp_path / "deny.txt"
    deny_list.write_text(f"# OFAC SDN extract\n{payer.address.upper().replace('0X', '0x')}\n")
    async with paid_app(
        chain, database_url, tmp_path, upstream.base_url, x402_deny_list=deny_list
    ) as (_, client):
        accepted = await challenge(client)
        response = await client.post("/run", json=PROMPT, headers=v2_header(chain, payer, accepted))
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "sanctioned_payer"
        clean = chain.new_payer(int(accepted["amount"]))
        ok = await client.post("/run", json=PROMPT, headers=v2_header(chain, clean, accepted))
        assert ok.status_code == 200, ok.text
    assert chain.balance(payer.address) == 1_000_000


async def test_a_payer_the_sanctions_oracle_lists_is_a_403(
    database, database_url, tmp_path, upstream, chain
):
    payer = chain.new_payer(1_000_000)
    chain.sanction(payer.address)
    async with paid_app(
        chain,
        database_url,
        tmp_path,
        upstream.base_url,
        x402_sanctions_oracle=chain.oracle.address,
    ) as (_, client):
        accepted = await challenge(client)
        response = await client.post(
            "/run", json=PROMPT, headers=v1_header(chain, payer, int(accepted["amount"]))
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "sanctioned_payer"
        clean = chain.new_payer(int(accepted["amount"]))
        ok = await client.post("/run", json=PROMPT, headers=v2_header(chain, clean, accepted))
        assert ok.status_code == 200, ok.text
    assert chain.balance(payer.address) == 1_000_000


# -- failed jobs and claims ------------------------------------------------------------------
async def test_a_failed_job_leaves_the_payer_whole_and_the_wallet_claims_the_credit(
    paid, chain, upstream
):
    _, client = paid
    upstream.behaviour.fail_status = 500
    accepted = await challenge(client)
    price = int(accepted["amount"])
    payer = chain.new_payer(price)

    response = await client.post("/run", json=PROMPT, headers=v2_header(chain, payer, accepted))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "failed"
    assert unb64(response.headers["payment-response"])["success"] is True

    key = await claim_key(client, payer)
    balance = (await client.get("/account/balance", headers=auth(key))).json()
    assert round(balance["balance"] * 1_000_000) == price
    assert balance["email"] is None
    upstream.behaviour.reset()
    rerun = await client.post("/run", json=PROMPT, headers=auth(key))  # spend it by key
    assert rerun.status_code == 200 and rerun.json()["status"] == "completed"


async def test_a_claim_must_be_fresh_signed_by_the_wallet_and_used_once(paid, chain):
    _, client = paid
    accepted = await challenge(client)
    payer = chain.new_payer(int(accepted["amount"]))
    paid_run = await client.post("/run", json=PROMPT, headers=v2_header(chain, payer, accepted))
    assert paid_run.status_code == 200

    def body(message: str, signer: Any = payer) -> dict[str, str]:
        return {
            "address": payer.address,
            "message": message,
            "signature": personal_sign(signer, message),
        }

    stale = claim_message(payer.address, SERVER, utcnow() - timedelta(minutes=10))
    response = await client.post("/account/wallet/claim", json=body(stale))
    assert response.status_code == 400 and response.json()["error"]["code"] == "claim_expired"

    fresh = claim_message(payer.address, SERVER, utcnow())
    forged = await client.post("/account/wallet/claim", json=body(fresh, chain.new_payer()))
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "invalid_claim_signature"

    elsewhere = claim_message(payer.address, "https://other.example", utcnow())
    response = await client.post("/account/wallet/claim", json=body(elsewhere))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_claim"

    first = await client.post("/account/wallet/claim", json=body(fresh))
    assert first.status_code == 201, first.text
    replay = await client.post("/account/wallet/claim", json=body(fresh))
    assert replay.status_code == 409 and replay.json()["error"]["code"] == "claim_replayed"
    key = first.json()["api_key"]
    assert (await client.get("/account/balance", headers=auth(key))).status_code == 200


async def test_an_idempotent_retry_returns_the_paid_job_and_keeps_its_payment_as_credit(
    paid, chain
):
    _, client = paid
    accepted = await challenge(client)
    price = int(accepted["amount"])
    payer = chain.new_payer(price * 2)
    retry = {"Idempotency-Key": "retry-1"}
    header = v2_header(chain, payer, accepted)
    first = await client.post("/run", json=PROMPT, headers={**retry, **header})
    assert first.status_code == 200
    cost = round(first.json()["cost_usd"] * 1_000_000)

    # The same authorization again is spent; a fresh one pays, and gets the same job.
    again = await client.post("/run", json=PROMPT, headers={**retry, **header})
    assert again.status_code == 402
    assert again.json()["error"] == "invalid_exact_evm_nonce_already_used"
    second = await client.post(
        "/run", json=PROMPT, headers={**retry, **v2_header(chain, payer, accepted)}
    )
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    balance, jobs = await wallet_state(client, payer)
    assert len(jobs) == 1
    assert balance == 2 * price - cost  # the second payment is the wallet's credit


# -- the official SDK client -----------------------------------------------------------------
@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve the (already started) app over loopback HTTP in this event loop; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_the_x402_sdk_client_pays_and_gets_the_result(paid, chain):
    from x402 import x402Client
    from x402.http.clients.httpx import x402HttpxClient
    from x402.mechanisms.evm.exact import register_exact_evm_client
    from x402.mechanisms.evm.signers import EthAccountSigner

    app, _ = paid
    payer = chain.new_payer(1_000_000)
    sdk = x402Client()
    register_exact_evm_client(sdk, EthAccountSigner(payer))
    allow_local_token(sdk, chain)
    before = chain.balance(chain.recipient)
    async with serving(app) as base_url, x402HttpxClient(sdk, base_url=base_url) as client:
        response = await client.post("/run", json=PROMPT)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    receipt = unb64(response.headers["payment-response"])
    assert receipt["success"] is True
    assert receipt["payer"] == payer.address.lower()
    price = 1_000_000 - chain.balance(payer.address)
    assert price == round(response.json()["estimated_cost_usd"] * 1_000_000)
    assert chain.balance(chain.recipient) == before + price


# -- settling through a facilitator ----------------------------------------------------------
async def test_a_configured_facilitator_verifies_and_settles_the_payment(
    database, database_url, tmp_path, upstream, chain
):
    async with facilitated_app(chain, database_url, tmp_path, upstream.base_url) as (
        _,
        client,
        facilitator,
    ):
        accepted = await challenge(client)
        price = int(accepted["amount"])
        before = chain.balance(chain.recipient)

        broke = chain.new_payer(price - 1)
        refused = await client.post("/run", json=PROMPT, headers=v2_header(chain, broke, accepted))
        assert refused.status_code == 402
        assert refused.json()["error"].startswith("invalid_exact_evm_")
        assert facilitator.state.calls == ["supported", "verify"]  # upto's address, asked once

        payer = chain.new_payer(price)
        response = await client.post("/run", json=PROMPT, headers=v2_header(chain, payer, accepted))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "completed"
        receipt = unb64(response.headers["payment-response"])
        assert chain.w3.eth.get_transaction_receipt(receipt["transaction"])["status"] == 1
        assert facilitator.state.calls == ["supported", "verify", "verify", "settle"]
    assert chain.balance(chain.recipient) == before + price
    assert chain.balance(payer.address) == 0
