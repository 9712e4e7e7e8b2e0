"""A gpubridge app that takes x402 payments on a local chain, and the headers clients send."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from starlette.applications import Starlette

from gpubridge.db.engine import utcnow
from gpubridge.payments.x402.wallets import claim_message
from tests.support.gateway_app import (
    auth,
    openai_backend,
    running_app,
    settings_for,
    write_catalog,
)
from tests.support.local_chain import LocalChain, personal_sign

PROMPT = {"service": "llm-4090", "input": {"prompt": "Hello world", "max_tokens": 8192}}
"""Its ceiling, 8192 output tokens and the prompt ($0.006498 without the model's tokenizer), is
the price; it costs the $0.003 minimum: the rest is excess."""


def upstream_catalog(path: Path, base_url: str) -> Path:
    def edit(data: dict[str, Any]) -> None:
        data["services"]["llm-4090"]["backends"] = [openai_backend("upstream", base_url)]

    return write_catalog(path, edit)


@asynccontextmanager
async def paid_app(
    chain: LocalChain, database_url: str, tmp_path: Path, upstream_url: str, **overrides: Any
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The app with x402 on ``chain`` (settings overridable), and an in-process client."""
    catalog = upstream_catalog(tmp_path / "catalog.yaml", upstream_url)
    settings = settings_for(database_url, tmp_path, catalog, **chain.settings(**overrides))
    async with running_app(settings) as (app, client):
        app.state.gateway.x402.use_chain(chain.gateway_chain())
        yield app, client


@asynccontextmanager
async def facilitated_app(
    chain: LocalChain, database_url: str, tmp_path: Path, upstream_url: str
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, Starlette]]:
    """The app settling through the SDK's facilitator on ``chain`` (no settlement key): the
    app, its client and the facilitator app (``state.calls`` lists what it was asked)."""
    from tests.support.x402_facilitator import facilitator_app

    facilitator = facilitator_app(chain)
    async with paid_app(
        chain,
        database_url,
        tmp_path,
        upstream_url,
        x402_facilitator_url="http://facilitator.test",
        x402_settlement_key=None,
    ) as (app, client):
        settlement = app.state.gateway.x402.settlement
        await settlement.client.aclose()
        settlement.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=facilitator))
        try:
            yield app, client, facilitator
        finally:
            await settlement.client.aclose()


def allow_local_token(sdk: Any, chain: LocalChain) -> None:
    """Let the x402 SDK client pay with the local token: it pays only assets it knows, up to
    $1, unless told otherwise."""
    sdk.set_spend_controls(
        {
            "allowed_assets": [
                {
                    "network": f"eip155:{chain.chain_id}",
                    "asset": chain.usdc.address,
                    "max_amount_per_payment": "100000",
                }
            ]
        }
    )


def b64(value: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def unb64(value: str) -> Any:
    return json.loads(base64.b64decode(value))


async def challenge(client: httpx.AsyncClient, body: dict[str, Any] = PROMPT) -> dict[str, Any]:
    """The v2 requirement an unpaid request is asked to pay."""
    response = await client.post("/run", json=body)
    assert response.status_code == 402, response.text
    accepted: dict[str, Any] = unb64(response.headers["payment-required"])["accepts"][0]
    return accepted


def v2_header(
    chain: LocalChain,
    payer: LocalAccount,
    accepted: dict[str, Any],
    *,
    payload: dict[str, Any] | None = None,
    **authorization: Any,
) -> dict[str, str]:
    """``PAYMENT-SIGNATURE`` paying ``accepted`` (authorization fields overridable)."""
    if payload is None:
        payload = chain.authorization(payer, int(accepted["amount"]), **authorization)
    document = {
        "x402Version": 2,
        "accepted": accepted,
        "resource": {"url": "http://gpubridge.test/run"},
        "payload": payload,
    }
    return {"PAYMENT-SIGNATURE": b64(document)}


def v1_header(
    chain: LocalChain,
    payer: LocalAccount,
    amount: int,
    *,
    network: str = "local",
    **authorization: Any,
) -> dict[str, str]:
    """``X-PAYMENT`` (x402 v1, scheme exact) for ``amount``."""
    document = {
        "x402Version": 1,
        "scheme": "exact",
        "network": network,
        "payload": chain.authorization(payer, amount, **authorization),
    }
    return {"X-PAYMENT": b64(document)}


def tx_header(
    tx_hash: str, payer: str, *, signer: LocalAccount | None = None, message: str | None = None
) -> dict[str, str]:
    """The API document's ``X-Payment: base64({"txHash","from"})``, optionally signed."""
    document: dict[str, Any] = {"txHash": tx_hash, "from": payer}
    if signer is not None:
        assert message is not None
        document["signature"] = personal_sign(signer, message)
    return {"X-Payment": b64(document)}


def now() -> int:
    return int(time.time())


async def claim_key(client: httpx.AsyncClient, payer: Any) -> str:
    """A new API key for ``payer``'s wallet account, claimed as docs/x402.md says."""
    message = claim_message(payer.address, "http://gpubridge.test", utcnow())
    claimed = await client.post(
        "/account/wallet/claim",
        json={
            "address": payer.address,
            "message": message,
            "signature": personal_sign(payer, message),
        },
    )
    assert claimed.status_code == 201, claimed.text
    key: str = claimed.json()["api_key"]
    return key


async def wallet_balance(client: httpx.AsyncClient, payer: Any) -> int:
    """What the wallet account of ``payer`` holds, in micro-USD."""
    key = await claim_key(client, payer)
    balance = (await client.get("/account/balance", headers=auth(key))).json()["balance"]
    return round(balance * 1_000_000)
