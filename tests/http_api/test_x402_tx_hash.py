"""The API document's tx-hash proof mode through POST /run, on a local chain: a USDC transfer
already on chain pays once, for at least the price, with enough confirmations, within the
payment window, bound to the request by the payer's signature (unless the operator relaxes it).
A final transfer that pays too little or too late is credited to its sender's wallet account."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

from gpubridge.payments.x402.chain import Chain
from gpubridge.payments.x402.txproof import RequestBinding, binding_message
from tests.support.openai_upstream import closed_port
from tests.support.x402_app import (
    PROMPT,
    challenge,
    paid_app,
    tx_header,
    unb64,
    v2_header,
    wallet_balance,
)

BODY = json.dumps(PROMPT).encode()
JSON = {"Content-Type": "application/json"}


async def price_of(client: Any) -> int:
    return int((await challenge(client))["amount"])


async def run(client: Any, headers: dict[str, str]) -> Any:
    return await client.post("/run", content=BODY, headers={**JSON, **headers})


def signed_for(tx_hash: str, body: bytes = BODY) -> str:
    return binding_message(
        tx_hash, RequestBinding("POST", "/run", hashlib.sha256(body).hexdigest())
    )


def proof(tx_hash: str, payer: Any) -> dict[str, str]:
    """The proof of ``payer``'s transfer, signed by ``payer`` for this request (``BODY``)."""
    return tx_header(tx_hash, payer.address, signer=payer, message=signed_for(tx_hash))


async def test_a_transfer_on_chain_pays_for_one_request_and_its_hash_cannot_pay_again(paid, chain):
    _, client = paid
    price = await price_of(client)
    payer = chain.new_payer(price * 3, eth=True)
    tx_hash = chain.transfer(payer, chain.recipient, price * 2)

    response = await run(client, proof(tx_hash, payer))
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "completed"
    receipt = unb64(response.headers["x-payment-response"])
    assert receipt == {
        "success": True,
        "transaction": tx_hash,
        "network": "local",
        "payer": payer.address.lower(),
        "amount": str(price * 2),
    }

    replay = await run(client, proof(tx_hash, payer))
    assert replay.status_code == 402
    assert replay.json()["error"] == "transaction_already_used"
    assert replay.json()["accepts"][0]["maxAmountRequired"] == str(price)


async def test_one_hash_sent_20_times_at_once_pays_exactly_one_job(paid, chain):
    _, client = paid
    price = await price_of(client)
    payer = chain.new_payer(price, eth=True)
    tx_hash = chain.transfer(payer, chain.recipient, price)

    async with asyncio.timeout(60):
        responses = await asyncio.gather(*(run(client, proof(tx_hash, payer)) for _ in range(20)))
    assert sorted(r.status_code for r in responses) == [200] + [402] * 19
    assert {r.json()["error"] for r in responses if r.status_code == 402} == {
        "transaction_already_used"
    }


REFUSALS = {
    "another token contract": "invalid_exact_evm_transfer_event_mismatch",
    "another recipient": "invalid_exact_evm_transfer_event_mismatch",
    "someone else's transfer": "invalid_exact_evm_transfer_event_mismatch",
    "less than the price": "invalid_exact_evm_payload_authorization_value_mismatch",
    "an unknown hash": "invalid_transaction_state",
}


async def test_a_transfer_that_does_not_pay_this_request_is_refused(paid, chain):
    _, client = paid
    price = await price_of(client)
    for case, reason in REFUSALS.items():
        payer = chain.new_payer(price, eth=True)
        claimant = payer
        if case == "another token contract":
            chain.mint(payer.address, price, token=chain.other)
            tx_hash = chain.transfer(payer, chain.recipient, price, token=chain.other)
        elif case == "another recipient":
            tx_hash = chain.transfer(payer, chain.new_payer().address, price)
        elif case == "someone else's transfer":
            tx_hash = chain.transfer(payer, chain.recipient, price)
            claimant = chain.new_payer()
        elif case == "less than the price":
            tx_hash = chain.transfer(payer, chain.recipient, price - 1)
        else:
            tx_hash = "0x" + "ab" * 32

        response = await run(client, proof(tx_hash, claimant))
        assert response.status_code == 402, (case, response.text)
        assert response.json()["error"] == reason, case


async def test_a_transfer_above_ten_dollars_needs_five_confirmations_and_the_excess_is_credited(
    paid, chain
):
    _, client = paid
    payer = chain.new_payer(20_000_000, eth=True)
    tx_hash = chain.transfer(payer, chain.recipient, 20_000_000)  # $20: 5 confirmations

    early = await run(client, proof(tx_hash, payer))
    assert early.status_code == 402
    assert early.json()["error"] == "invalid_transaction_state"
    assert "1 confirmations; 5 are needed" in early.json()["message"]
    chain.mine(3)
    assert (await run(client, proof(tx_hash, payer))).status_code == 402
    chain.mine(1)
    response = await run(client, proof(tx_hash, payer))
    assert response.status_code == 200, response.text
    assert unb64(response.headers["x-payment-response"])["amount"] == "20000000"


async def test_a_transfer_older_than_the_payment_window_is_refused(paid, chain):
    app, client = paid
    price = await price_of(client)
    payer = chain.new_payer(price, eth=True)
    tx_hash = chain.transfer(payer, chain.recipient, price)
    app.state.gateway.x402.clock = lambda: time.time() + 400  # five minutes and more later

    response = await run(client, proof(tx_hash, payer))
    assert response.status_code == 402
    assert response.json()["error"] == "invalid_exact_evm_payload_authorization_valid_before"


async def test_a_transfer_too_small_or_too_late_runs_no_job_but_is_credited_to_its_sender_once(
    paid, chain
):
    app, client = paid
    price = await price_of(client)
    short = chain.new_payer(price, eth=True)
    short_tx = chain.transfer(short, chain.recipient, price - 1)
    late = chain.new_payer(price, eth=True)
    late_tx = chain.transfer(late, chain.recipient, price)

    underpaid = await run(client, proof(short_tx, short))
    app.state.gateway.x402.clock = lambda: time.time() + 400
    too_late = await run(client, proof(late_tx, late))
    for response, payer in ((underpaid, short), (too_late, late)):
        assert response.status_code == 402, response.text
        assert (
            f"the transfer was credited to the wallet account of {payer.address.lower()}, "
            "claim it with POST /account/wallet/claim"
        ) in response.json()["message"]
    assert underpaid.json()["error"] == "invalid_exact_evm_payload_authorization_value_mismatch"
    assert too_late.json()["error"] == "invalid_exact_evm_payload_authorization_valid_before"

    # Offered again (or by anyone else) it is used up: it was credited once.
    app.state.gateway.x402.clock = time.time
    for tx_hash, payer in ((short_tx, short), (late_tx, late)):
        again = await run(client, proof(tx_hash, payer))
        assert again.status_code == 402
        assert again.json()["error"] == "transaction_already_used"
    assert await wallet_balance(client, short) == price - 1
    assert await wallet_balance(client, late) == price


async def test_the_settlement_of_an_authorization_cannot_also_pay_as_a_tx_hash(paid, chain):
    _, client = paid
    accepted = await challenge(client)
    payer = chain.new_payer(int(accepted["amount"]))
    response = await client.post("/run", json=PROMPT, headers=v2_header(chain, payer, accepted))
    assert response.status_code == 200
    settlement = unb64(response.headers["payment-response"])["transaction"]

    again = await run(client, proof(settlement, payer))
    assert again.status_code == 402
    assert again.json()["error"] == "transaction_already_used"


async def test_by_default_a_signature_must_bind_the_hash_to_the_request(
    database, database_url, tmp_path, upstream, chain
):
    price_payer = chain.new_payer(10_000_000, eth=True)
    async with paid_app(chain, database_url, tmp_path, upstream.base_url) as (_, client):
        price = await price_of(client)
        tx_hash = chain.transfer(price_payer, chain.recipient, price)
        stranger = chain.new_payer()

        unsigned = await run(client, tx_header(tx_hash, price_payer.address))
        other_body = signed_for(tx_hash, b'{"service":"llm-4090","input":{"prompt":"Hi"}}')
        other_request = await run(
            client, tx_header(tx_hash, price_payer.address, signer=price_payer, message=other_body)
        )
        by_stranger = await run(
            client,
            tx_header(tx_hash, price_payer.address, signer=stranger, message=signed_for(tx_hash)),
        )
        for refused in (unsigned, other_request, by_stranger):
            assert refused.status_code == 402, refused.text
            assert refused.json()["error"] == "invalid_exact_evm_payload_signature"

        bound = await run(
            client,
            tx_header(
                tx_hash, price_payer.address, signer=price_payer, message=signed_for(tx_hash)
            ),
        )
        assert bound.status_code == 200, bound.text


async def test_relaxed_unsigned_proofs_pass_but_a_signature_that_is_present_must_be_valid(
    database, database_url, tmp_path, upstream, chain
):
    async with paid_app(
        chain, database_url, tmp_path, upstream.base_url, x402_require_tx_signature=False
    ) as (_, client):
        price = await price_of(client)
        payer = chain.new_payer(price * 2, eth=True)
        tx_hash = chain.transfer(payer, chain.recipient, price)
        wrong = await run(
            client,
            tx_header(
                tx_hash, payer.address, signer=chain.new_payer(), message=signed_for(tx_hash)
            ),
        )
        assert wrong.status_code == 402
        assert wrong.json()["error"] == "invalid_exact_evm_payload_signature"
        assert (await run(client, proof(tx_hash, payer))).status_code == 200

        unsigned_tx = chain.transfer(payer, chain.recipient, price)
        unsigned = await run(client, tx_header(unsigned_tx, payer.address))
        assert unsigned.status_code == 200, unsigned.text


async def test_an_unreachable_payment_network_is_a_503_never_a_500(paid, chain):
    app, client = paid
    price = await price_of(client)
    payer = chain.new_payer(price, eth=True)
    tx_hash = chain.transfer(payer, chain.recipient, price)
    dead = Chain.connect(f"http://127.0.0.1:{closed_port()}")
    app.state.gateway.x402.use_chain(dead)
    try:
        response = await run(client, proof(tx_hash, payer))
    finally:
        await dead.close()
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "payment_network_unavailable"

    app.state.gateway.x402.use_chain(chain.gateway_chain())  # the payment is still good
    assert (await run(client, proof(tx_hash, payer))).status_code == 200
