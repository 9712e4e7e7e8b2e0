"""x402 requests that outlive their exchange, on a local chain whose mining the tests hold back:
a settlement not confirmed in time (202 ``settlement_pending``, then the job once the transfer
lands, or the reservation released when it reverts), and the ``payment-identifier`` extension
(a paid retry gets the first result), with the official SDK client over uvicorn. On SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gpubridge.db.tables import x402_payments
from tests.http_api.test_x402 import serving, wallet_state
from tests.support.local_chain import LocalChain
from tests.support.x402_app import (
    PROMPT,
    allow_local_token,
    b64,
    challenge,
    paid_app,
    unb64,
    v2_header,
)

SETTLE_TIMEOUT_S = 0.5


@pytest.fixture
def chain() -> Iterator[LocalChain]:
    """A chain of the test's own: these tests hold its mining back and move its clock."""
    yield LocalChain()


@pytest.fixture
async def paid(database, database_url: str, tmp_path: Path, upstream, chain) -> AsyncIterator[Any]:
    async with paid_app(
        chain, database_url, tmp_path, upstream.base_url, x402_settle_timeout_s=SETTLE_TIMEOUT_S
    ) as pair:
        yield pair
    upstream.behaviour.reset()


@contextmanager
def mining_held(chain: LocalChain) -> Iterator[None]:
    """Transactions wait in the pool until the block ``chain.mine()`` makes."""
    chain.tester.disable_auto_mine_transactions()
    try:
        yield
    finally:
        chain.tester.auto_mine_transactions = True


def with_identifier(header: dict[str, str], identifier: str) -> dict[str, str]:
    """The v2 payment header naming the request with the ``payment-identifier`` extension."""
    document = unb64(header["PAYMENT-SIGNATURE"])
    document["extensions"] = {"payment-identifier": {"info": {"required": False, "id": identifier}}}
    return {"PAYMENT-SIGNATURE": b64(document)}


async def payment_statuses(database) -> list[str]:
    async with database.connect() as conn:
        return list((await conn.scalars(select(x402_payments.c.status))).all())


# -- settlement pending --------------------------------------------------------------------
async def test_a_settlement_not_confirmed_in_time_runs_its_job_once_the_transfer_lands(
    paid, chain, database
):
    app, client = paid
    gateway = app.state.gateway
    accepted = await challenge(client)
    price = int(accepted["amount"])
    payer = chain.new_payer(price)
    with mining_held(chain):
        response = await client.post("/run", json=PROMPT, headers=v2_header(chain, payer, accepted))
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "settlement_pending"
        receipt = unb64(response.headers["payment-response"])
        assert receipt["success"] is False
        assert receipt["errorReason"] == "settlement_pending"
        assert receipt["transaction"].startswith("0x")
        status = await client.get(f"/status/{body['job_id']}")
        assert status.status_code == 200
        assert status.json()["status"] == "settlement_pending"

        await gateway.resolve_pending_payments()  # not mined: it stays pending
        assert (await client.get(f"/status/{body['job_id']}")).json()["status"] == (
            "settlement_pending"
        )
        chain.mine()

    await gateway.resolve_pending_payments()
    await gateway.resolve_pending_payments()  # a second round changes nothing
    job = await gateway.wait(await gateway.get(body["job_id"]), 10)
    assert job.status.value == "completed"
    assert chain.balance(payer.address) == 0  # paid once on chain
    balance, jobs = await wallet_state(client, payer)
    assert [j["id"] for j in jobs] == [body["job_id"]]  # one job, held and charged once
    assert balance == price - round(job.cost_micros)
    assert await payment_statuses(database) == ["settled"]


async def test_a_settlement_that_never_lands_releases_the_reservation_and_charges_nothing(
    paid, chain, database
):
    app, client = paid
    gateway = app.state.gateway
    accepted = await challenge(client)
    price = int(accepted["amount"])
    payer = chain.new_payer(price)
    valid_before = chain.latest_timestamp() + 60
    with mining_held(chain):
        header = v2_header(chain, payer, accepted, valid_before=valid_before)
        response = await client.post("/run", json=PROMPT, headers=header)
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        # The transaction is mined only after the authorization expired: it reverts.
        chain.tester.time_travel(valid_before + 1)
        chain.mine()
    await gateway.resolve_pending_payments()
    status = await client.get(f"/status/{job_id}")
    assert status.json()["status"] == "released"
    assert chain.balance(payer.address) == price
    assert await payment_statuses(database) == ["failed"]
    assert await gateway.pending_view(job_id) is not None
    async with database.connect() as conn:
        assert await conn.scalar(select(x402_payments.c.account_id)) is None  # no credit


# -- payment identifiers -------------------------------------------------------------------
class PaymentId:
    """The SDK client's extension hook adding this ``payment-identifier`` to its payments."""

    key = "payment-identifier"
    hooks = None
    transport_hooks = None

    def __init__(self, identifier: str) -> None:
        self.identifier = identifier

    def enrich_payment_payload(self, payload: Any, payment_required: Any) -> Any:
        from x402.extensions.payment_identifier import append_payment_identifier_to_extensions

        extensions = dict(payload.extensions or {})
        append_payment_identifier_to_extensions(extensions, self.identifier)
        return payload.model_copy(update={"extensions": extensions})


def sdk_client(chain: LocalChain, payer: Any, identifier: str) -> Any:
    from x402 import x402Client
    from x402.mechanisms.evm.exact import register_exact_evm_client
    from x402.mechanisms.evm.signers import EthAccountSigner

    sdk = x402Client()
    register_exact_evm_client(sdk, EthAccountSigner(payer))
    sdk.register_extension(PaymentId(identifier))
    allow_local_token(sdk, chain)
    return sdk


async def test_the_sdk_client_retrying_with_its_payment_identifier_gets_the_first_result(
    paid, chain
):
    from x402.http.clients.httpx import x402HttpxClient

    app, client = paid
    payer = chain.new_payer(1_000_000)
    identifier = "pay_" + "7d5d747be160e280504c099d984bcfe0"
    sdk = sdk_client(chain, payer, identifier)
    async with serving(app) as base_url, x402HttpxClient(sdk, base_url=base_url) as http:
        unpaid = await http.post("/run", json={**PROMPT, "service": "nope"})
        first = await http.post("/run", json=PROMPT)
        again = await http.post("/run", json=PROMPT)  # a new authorization, same identifier
    assert unpaid.status_code in (404, 422)
    assert first.status_code == 200, first.text
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    required = unb64((await client.post("/run", json=PROMPT)).headers["payment-required"])
    assert required["extensions"]["payment-identifier"]["info"] == {"required": False}
    price = round(first.json()["estimated_cost_usd"] * 1_000_000)
    assert chain.balance(payer.address) == 1_000_000 - price  # the retry settled nothing
    _, jobs = await wallet_state(client, payer)
    assert len(jobs) == 1


async def test_a_payment_identifier_names_one_request_of_one_payer(paid, chain):
    _, client = paid
    accepted = await challenge(client)
    price = int(accepted["amount"])
    payer = chain.new_payer(price * 2)
    identifier = "retry-0123456789abcdef"
    first = await client.post(
        "/run", json=PROMPT, headers=with_identifier(v2_header(chain, payer, accepted), identifier)
    )
    assert first.status_code == 200, first.text

    other = {**PROMPT, "input": {**PROMPT["input"], "prompt": "Another"}}
    other_terms = await challenge(client, other)
    reused = await client.post(
        "/run",
        json=other,
        headers=with_identifier(v2_header(chain, payer, other_terms), identifier),
    )
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "payment_identifier_reused"

    # Another payer's identifier is theirs: the same name pays a request of its own.
    stranger = chain.new_payer(price)
    theirs = await client.post(
        "/run",
        json=PROMPT,
        headers=with_identifier(v2_header(chain, stranger, accepted), identifier),
    )
    assert theirs.status_code == 200
    assert theirs.json()["id"] != first.json()["id"]

    # A retry whose signature is not the payer's gets nothing.
    forged = v2_header(chain, stranger, accepted)
    document = unb64(forged["PAYMENT-SIGNATURE"])
    document["payload"]["authorization"]["from"] = payer.address
    refused = await client.post(
        "/run",
        json=PROMPT,
        headers=with_identifier({"PAYMENT-SIGNATURE": b64(document)}, identifier),
    )
    assert refused.status_code == 402
    assert chain.balance(payer.address) == price  # one payment of two possible


async def test_a_malformed_payment_identifier_is_a_400(paid, chain):
    _, client = paid
    accepted = await challenge(client)
    payer = chain.new_payer(int(accepted["amount"]))
    header = with_identifier(v2_header(chain, payer, accepted), "short")
    response = await client.post("/run", json=PROMPT, headers=header)
    assert response.status_code == 400
    assert chain.balance(payer.address) == int(accepted["amount"])


async def test_a_retry_during_a_pending_settlement_gets_the_pending_request_then_its_job(
    paid, chain
):
    app, client = paid
    accepted = await challenge(client)
    price = int(accepted["amount"])
    payer = chain.new_payer(price * 2)
    identifier = "pending-0123456789abcdef"
    with mining_held(chain):
        first = await client.post(
            "/run",
            json=PROMPT,
            headers=with_identifier(v2_header(chain, payer, accepted), identifier),
        )
        assert first.status_code == 202, first.text
        retry = await client.post(
            "/run",
            json=PROMPT,
            headers=with_identifier(v2_header(chain, payer, accepted), identifier),
        )
        assert retry.status_code == 202
        assert retry.json()["job_id"] == first.json()["job_id"]
        chain.mine()
    done = await client.post(
        "/run", json=PROMPT, headers=with_identifier(v2_header(chain, payer, accepted), identifier)
    )
    assert done.status_code == 200, done.text
    assert done.json()["id"] == first.json()["job_id"]
    assert chain.balance(payer.address) == price  # settled once
    await app.state.gateway.resolve_pending_payments()  # nothing left, nothing twice
    _, jobs = await wallet_state(client, payer)
    assert len(jobs) == 1


async def test_an_identified_request_refused_after_it_paid_can_be_retried_under_its_identifier(
    paid, chain
):
    _, client = paid
    accepted = await challenge(client)
    price = int(accepted["amount"])
    payer = chain.new_payer(price * 3)
    first = await client.post(
        "/run",
        json=PROMPT,
        headers={"Idempotency-Key": "k-1", **v2_header(chain, payer, accepted)},
    )
    assert first.status_code == 200
    other = {**PROMPT, "input": {**PROMPT["input"], "prompt": "Another"}}
    terms = await challenge(client, other)
    identifier = "refused-0123456789abcdef"
    # The Idempotency-Key names another request: refused after the payment settled.
    refused = await client.post(
        "/run",
        json=other,
        headers={
            "Idempotency-Key": "k-1",
            **with_identifier(v2_header(chain, payer, terms), identifier),
        },
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "idempotency_key_reused"
    retried = await client.post(
        "/run",
        json=other,
        headers={
            "Idempotency-Key": "k-2",
            **with_identifier(v2_header(chain, payer, terms), identifier),
        },
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["id"] != first.json()["id"]
