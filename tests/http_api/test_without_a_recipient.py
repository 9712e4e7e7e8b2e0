"""A gateway whose operator has not named a recipient wallet takes no USDC: a paid request
without an API key is a 401 saying how to get a key (no 402 naming someone's wallet), /catalog
says x402 and USDC top-ups are off, and a USDC top-up is a 503."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gpubridge.db.tables import jobs
from tests.http_api.conftest import use_upstream
from tests.support.gateway_app import (
    TEST_RECIPIENT,
    UNSET,
    auth,
    register,
    running_app,
    settings_for,
    write_catalog,
)

PROMPT = {"service": "llm-4090", "input": {"prompt": "Hello world", "max_tokens": 16}}
CHAT = {"model": "llama-3.1-8b-instant", "messages": [{"role": "user", "content": "Hi"}]}
TX_PROOF = base64.b64encode(
    json.dumps({"txHash": "0x" + "ab" * 32, "from": "0x" + "cd" * 20}).encode()
).decode()


@pytest.fixture
def start(database, database_url: str, tmp_path: Path, upstream):
    """Start a gateway with these settings, the recipient left at gpubridge's default (none)
    unless given."""

    def starting(**overrides: Any) -> Any:
        catalog = write_catalog(tmp_path / "catalog.yaml", use_upstream(upstream.base_url))
        values = {"x402_pay_to": UNSET, **overrides}
        return running_app(settings_for(database_url, tmp_path, catalog, **values))

    return starting


@pytest.fixture
async def unconfigured(start) -> AsyncIterator[Any]:
    async with start() as pair:
        yield pair


async def job_count(app: Any) -> int:
    async with app.state.gateway.db.connect() as conn:
        count: int = (await conn.execute(select(func.count()).select_from(jobs))).scalar_one()
    return count


async def test_a_paid_request_without_a_key_is_401_saying_how_to_get_one(unconfigured):
    app, client = unconfigured
    for headers in ({}, {"X-PAYMENT": TX_PROOF}, {"PAYMENT-SIGNATURE": TX_PROOF}):
        response = await client.post("/run", json=PROMPT, headers=headers)
        assert response.status_code == 401, response.text
        assert "payment-required" not in response.headers
        error = response.json()["error"]
        assert error["code"] == "missing_api_key"
        assert "POST /account/register" in error["message"]
        assert "x402" in error["message"]
        assert TEST_RECIPIENT.lower() not in response.text.lower()
        assert "0xB0FdC6030B9f30652e8B221B8090d443Dd3C6381".lower() not in response.text.lower()
    assert await job_count(app) == 0


async def test_the_openai_routes_without_a_key_are_401_in_openai_shape(unconfigured):
    app, client = unconfigured
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 401, response.text
    assert "payment-required" not in response.headers
    error = response.json()["error"]
    assert error["code"] == "missing_api_key"
    assert "POST /account/register" in error["message"]
    response = await client.post("/v1/embeddings", json={"input": "hi", "model": "x"})
    assert response.status_code == 401
    assert await job_count(app) == 0


async def test_a_key_still_runs_jobs_and_charges_them(unconfigured):
    app, client = unconfigured
    key = await register(client, "keyed@example.com")
    await app.state.gateway.grant("keyed@example.com", 1_000_000)
    response = await client.post("/run", json=PROMPT, headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.json()["cost_usd"] == 0.003


async def test_the_catalog_says_x402_and_usdc_top_ups_are_off(unconfigured):
    _, client = unconfigured
    response = await client.get("/catalog")
    assert response.status_code == 200
    payments = response.json()["payments"]
    assert payments["x402"] == {"offered": False}
    assert payments["usdc_topups"] == {"offered": False}
    assert payments["api_key"]["offered"] is True
    assert payments["api_key"]["register_url"].endswith("/account/register")
    assert len(response.json()["services"]) == 26


async def test_a_usdc_top_up_is_503_not_configured(unconfigured):
    _, client = unconfigured
    key = await register(client)
    response = await client.post(
        "/account/topup-crypto", json={"package": "credits_10"}, headers=auth(key)
    )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "crypto_topups_not_configured"
    assert "GPUBRIDGE_X402_PAY_TO" in error["message"]
    confirm = await client.post(
        "/account/topup-crypto/confirm", json={"txHash": "0x" + "ab" * 32}, headers=auth(key)
    )
    assert confirm.status_code == 503
    assert confirm.json()["error"]["code"] == "crypto_topups_not_configured"


async def test_starting_logs_that_x402_is_off_and_why(start, caplog):
    caplog.set_level(logging.INFO, logger="gpubridge.gateway.payment_rails")
    async with start():
        pass
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("gpubridge")]
    assert any(m.startswith("x402 payments off: GPUBRIDGE_X402_PAY_TO") for m in messages)
    assert any(m.startswith("USDC top-ups off: GPUBRIDGE_X402_PAY_TO") for m in messages)


async def test_with_a_recipient_the_catalog_offers_x402_paid_to_it(start, caplog):
    caplog.set_level(logging.INFO, logger="gpubridge.gateway.payment_rails")
    async with start(x402_pay_to=TEST_RECIPIENT) as (_, client):
        payments = (await client.get("/catalog")).json()["payments"]
        challenge = await client.post("/run", json=PROMPT)
    assert payments["x402"]["offered"] is True
    assert payments["x402"]["pay_to"] == TEST_RECIPIENT
    assert payments["x402"]["network"] == "eip155:8453"
    assert payments["usdc_topups"]["offered"] is True
    assert challenge.status_code == 402
    assert challenge.json()["accepts"][0]["payTo"] == TEST_RECIPIENT
    assert any(
        r.getMessage().startswith(f"x402 payments on: paid to {TEST_RECIPIENT} on eip155:8453")
        for r in caplog.records
    )


async def test_x402_enabled_false_with_a_recipient_is_401_and_off_in_the_catalog(start):
    async with start(x402_pay_to=TEST_RECIPIENT, x402_enabled=False) as (_, client):
        response = await client.post("/run", json=PROMPT)
        payments = (await client.get("/catalog")).json()["payments"]
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    assert payments["x402"] == {"offered": False}
    assert payments["usdc_topups"]["offered"] is True
