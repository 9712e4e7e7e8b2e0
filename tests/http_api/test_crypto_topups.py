"""USDC top-ups through the API on a local chain: invoices with an exact, unique amount; the
watcher crediting a matching transfer once; ``confirm`` crediting at once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpubridge.payments import ledger
from gpubridge.payments.crypto_topups import CryptoTopups
from gpubridge.payments.x402.txproof import RequestBinding, binding_message
from tests.support.gateway_app import auth, register, running_app, settings_for
from tests.support.local_chain import LocalChain
from tests.support.x402_app import PROMPT, tx_header, upstream_catalog

PRICE_10 = 10_050_000
"""credits_10: $10 plus the 0.5% fee, in USDC atomic units."""


@dataclass
class CryptoGateway:
    client: httpx.AsyncClient
    topups: CryptoTopups
    key: str
    gateway: Any

    async def watch(self) -> int:
        """One watcher pass, as the gateway's maintenance runs it."""
        return await self.real_watch()

    real_watch: Any = None


@pytest.fixture
async def gw(
    database: object,
    database_url: str,
    tmp_path: Path,
    upstream: Any,
    chain: LocalChain,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[CryptoGateway]:
    catalog = upstream_catalog(tmp_path / "catalog.yaml", upstream.base_url)
    settings = settings_for(database_url, tmp_path, catalog, **chain.settings())
    async with running_app(settings) as (app, client):
        topups: CryptoTopups = app.state.gateway.crypto_topups
        topups.use_chain(chain.gateway_chain())
        # The maintenance loop's own passes would race the steps of these tests: the tests
        # run each pass themselves.
        real_watch = topups.watch
        monkeypatch.setattr(topups, "watch", _no_pass)
        key = await register(client)
        yield CryptoGateway(client, topups, key, app.state.gateway, real_watch)


async def _no_pass() -> int:
    return 0


async def invoice(gw: CryptoGateway, package: str = "credits_10") -> dict[str, Any]:
    response = await gw.client.post(
        "/account/topup-crypto", json={"package": package}, headers=auth(gw.key)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def balance_micros(gw: CryptoGateway, key: str | None = None) -> int:
    response = await gw.client.get("/account/balance", headers=auth(key or gw.key))
    assert response.status_code == 200, response.text
    return round(response.json()["balance"] * 1_000_000)


async def status_of(gw: CryptoGateway, invoice_id: str) -> str:
    response = await gw.client.get(f"/account/topup-crypto/{invoice_id}", headers=auth(gw.key))
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def pay(chain: LocalChain, amount: int) -> str:
    payer = chain.new_payer(amount, eth=True)
    return chain.transfer(payer, chain.recipient, amount)


async def confirm(gw: CryptoGateway, tx_hash: str) -> httpx.Response:
    return await gw.client.post(
        "/account/topup-crypto/confirm", json={"txHash": tx_hash}, headers=auth(gw.key)
    )


async def test_invoices_ask_the_price_plus_fee_plus_a_distinct_offset(gw, chain):
    invoices = [await invoice(gw) for _ in range(5)]
    amounts = [int(i["amount_units"]) for i in invoices]
    assert len(set(amounts)) == 5
    assert all(PRICE_10 < a < PRICE_10 + 10_000 for a in amounts)
    first = invoices[0]
    assert first["amount_usdc"] == f"10.{amounts[0] - 10_000_000:06d}"
    assert first["recipient"] == chain.recipient
    assert first["asset"] == chain.usdc.address
    assert first["network"] == f"eip155:{chain.chain_id}"
    assert first["chain_id"] == chain.chain_id
    assert first["credits_usd"] == 10.0
    assert first["status"] == "open"

    big = await invoice(gw, "credits_100")
    assert 100_500_000 < int(big["amount_units"]) < 100_510_000
    assert big["credits_usd"] == 115.0


async def test_an_unknown_package_is_422_and_a_server_without_crypto_is_503(gw, chain):
    response = await gw.client.post(
        "/account/topup-crypto", json={"package": "credits_7"}, headers=auth(gw.key)
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_package"

    gw.topups.config = None
    response = await gw.client.post(
        "/account/topup-crypto", json={"package": "credits_10"}, headers=auth(gw.key)
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "crypto_topups_not_configured"


async def test_the_watcher_credits_a_matching_transfer_once(gw, chain):
    wanted = await invoice(gw)
    other = await invoice(gw)
    tx_hash = pay(chain, int(wanted["amount_units"]))
    chain.mine(4)  # $10.05 is above the large amount: 5 confirmations

    assert await gw.watch() == 1
    assert await gw.watch() == 0
    assert await balance_micros(gw) == 10_000_000
    assert await status_of(gw, wanted["invoice_id"]) == "paid"
    assert await status_of(gw, other["invoice_id"]) == "open"

    # Reading the same blocks again (the cursor forgotten) credits nothing more.
    await gw.topups.save_cursor(None)
    assert await gw.watch() == 0
    assert await balance_micros(gw) == 10_000_000
    replay = await confirm(gw, tx_hash)
    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "transaction_already_used"


async def test_the_gateways_maintenance_runs_the_watcher(gw, chain, monkeypatch):
    wanted = await invoice(gw)
    pay(chain, int(wanted["amount_units"]))
    chain.mine(4)
    monkeypatch.setattr(gw.topups, "watch", gw.real_watch)

    await gw.gateway.maintenance()
    assert await status_of(gw, wanted["invoice_id"]) == "paid"
    assert await balance_micros(gw) == 10_000_000


async def test_a_transfer_of_another_amount_credits_nothing(gw, chain):
    wanted = await invoice(gw)
    tx_hash = pay(chain, int(wanted["amount_units"]) + 1)
    chain.mine(4)

    assert await gw.watch() == 0
    assert await balance_micros(gw) == 0
    assert await status_of(gw, wanted["invoice_id"]) == "open"
    response = await confirm(gw, tx_hash)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "amount_mismatch"


async def test_too_few_confirmations_credit_nothing_yet(gw, chain):
    wanted = await invoice(gw)
    tx_hash = pay(chain, int(wanted["amount_units"]))
    chain.mine(2)

    assert await gw.watch() == 0
    response = await confirm(gw, tx_hash)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "not_enough_confirmations"
    assert await balance_micros(gw) == 0

    chain.mine(2)
    assert await gw.watch() == 1
    assert await balance_micros(gw) == 10_000_000


async def test_an_expired_invoice_is_not_credited(gw, chain):
    now = time.time()
    gw.topups.clock = lambda: now - 7200  # created two hours ago, expired an hour ago
    long_gone = await invoice(gw)
    gw.topups.clock = lambda: now - 3660  # expired a minute ago (its amount still reserved)
    just_gone = await invoice(gw)
    gw.topups.clock = time.time
    late = pay(chain, int(just_gone["amount_units"]))
    pay(chain, int(long_gone["amount_units"]))
    chain.mine(4)

    response = await confirm(gw, late)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invoice_expired"
    assert await gw.watch() == 0
    assert await balance_micros(gw) == 0
    assert await status_of(gw, long_gone["invoice_id"]) == "expired"
    assert await status_of(gw, just_gone["invoice_id"]) == "expired"


async def test_confirm_credits_at_once_and_a_hash_credits_once(gw, chain):
    wanted = await invoice(gw, "credits_25")
    tx_hash = pay(chain, int(wanted["amount_units"]))
    chain.mine(4)

    response = await confirm(gw, tx_hash)
    assert response.status_code == 200, response.text
    paid = response.json()
    assert paid["status"] == "paid"
    assert paid["tx_hash"] == tx_hash
    assert await balance_micros(gw) == 26_250_000

    again = await confirm(gw, tx_hash)
    assert again.status_code == 409
    assert await gw.watch() == 0
    assert await balance_micros(gw) == 26_250_000


async def test_confirm_refuses_what_does_not_pay_this_account(gw, chain):
    mine = await invoice(gw)
    stranger_key = await register(gw.client, "stranger@example.com")
    response = await gw.client.post(
        "/account/topup-crypto", json={"package": "credits_10"}, headers=auth(stranger_key)
    )
    theirs = response.json()
    tx_theirs = pay(chain, int(theirs["amount_units"]))
    payer = chain.new_payer(int(mine["amount_units"]), eth=True)
    tx_elsewhere = chain.transfer(payer, chain.new_payer().address, int(mine["amount_units"]))
    chain.mine(4)

    cases = {
        tx_theirs: "amount_mismatch",
        tx_elsewhere: "transfer_not_found",
        "0x" + "ab" * 32: "transaction_not_found",
        "0x1234": "invalid_input",
    }
    for tx_hash, code in cases.items():
        response = await confirm(gw, tx_hash)
        assert response.status_code == 422, (tx_hash, response.text)
        assert response.json()["error"]["code"] == code
    assert await balance_micros(gw) == 0

    missing = await gw.client.get(
        f"/account/topup-crypto/{theirs['invoice_id']}", headers=auth(gw.key)
    )
    assert missing.status_code == 404


async def test_the_watcher_reads_on_from_its_cursor_range_by_range(gw, chain):
    chain.mine(100)
    wanted = await invoice(gw)
    pay(chain, int(wanted["amount_units"]))
    chain.mine(4)
    latest = chain.w3.eth.block_number
    gw.topups.scan_blocks = 3
    await gw.topups.save_cursor(latest - 100)

    passes = 0
    while await status_of(gw, wanted["invoice_id"]) != "paid":
        passes += 1
        assert passes <= 10, "the watcher did not reach the transfer"
        cursor = await gw.topups.cursor()
        await gw.watch()
        assert (await gw.topups.cursor() or 0) > (cursor or 0)
    assert passes == 4  # the transfer is 96 blocks on; a pass reads 10 ranges of 3
    assert await balance_micros(gw) == 10_000_000


@pytest.mark.parametrize("invoice_path", ["confirm", "watcher"])
async def test_one_transfer_offered_at_once_to_x402_and_to_an_invoice_is_credited_once(
    gw, chain, monkeypatch, invoice_path
):
    """Both paths pass their checks before either credits (each credit waits, up to a few
    seconds, for the other to arrive): the transfer's shared key lets one credit through."""
    gw.gateway.x402.use_chain(chain.gateway_chain())
    wanted = await invoice(gw)
    amount = int(wanted["amount_units"])
    payer = chain.new_payer(amount, eth=True)
    tx_hash = chain.transfer(payer, chain.recipient, amount)
    chain.mine(4)

    real_credit = ledger.credit
    arrived: list[str] = []
    both_here = asyncio.Event()

    async def credit_when_both_are_here(*args: Any, **kwargs: Any) -> None:
        arrived.append(kwargs["house"])
        if len(arrived) == 2:
            both_here.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                await both_here.wait()
        await real_credit(*args, **kwargs)

    monkeypatch.setattr(ledger, "credit", credit_when_both_are_here)
    body = json.dumps(PROMPT).encode()
    message = binding_message(
        tx_hash, RequestBinding("POST", "/run", hashlib.sha256(body).hexdigest())
    )
    x402_proof = tx_header(tx_hash, payer.address, signer=payer, message=message)

    async def to_invoice() -> bool:
        if invoice_path == "confirm":
            response = await confirm(gw, tx_hash)
            assert response.status_code in (200, 409), response.text
            return response.status_code == 200
        return await gw.real_watch() == 1

    async def to_x402() -> bool:
        response = await gw.client.post(
            "/run", content=body, headers={"Content-Type": "application/json", **x402_proof}
        )
        if response.status_code == 402:
            assert response.json()["error"] == "transaction_already_used", response.text
        return response.status_code == 200

    async with asyncio.timeout(60):
        credited = await asyncio.gather(to_invoice(), to_x402())
    assert sorted(credited) == [False, True], credited
    invoice_credit = await balance_micros(gw)
    assert invoice_credit == (10_000_000 if credited[0] else 0)
    assert await status_of(gw, wanted["invoice_id"]) == ("paid" if credited[0] else "open")
