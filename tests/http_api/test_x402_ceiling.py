"""The x402 price of a job is the ceiling it holds; what the job does not use stays as the
payer's credit. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gpubridge.catalog.tokens import MESSAGE_ALLOWANCE, TokenCounter
from gpubridge.money import ceil_div
from tests.support.x402_app import challenge, paid_app, v2_header, wallet_balance

CJK_4000 = ("我们今天在北京的公园里散步。天气很好" * 223)[:4000]
BODY = {"service": "llm-4090", "input": {"prompt": CJK_4000, "max_tokens": 100}}
# 12,000 UTF-8 bytes and the template allowance at $0.59/M, 100 output tokens at $0.79/M.
CEILING = ceil_div((12_000 + 2 * MESSAGE_ALLOWANCE) * 590_000 + 100 * 790_000, 1_000_000)


@pytest.fixture
async def paid(database, database_url: str, tmp_path: Path, upstream, chain) -> AsyncIterator[Any]:
    async with paid_app(chain, database_url, tmp_path, upstream.base_url) as (app, client):
        # No tokenizer for the model on this machine: prompts are bounded by their bytes.
        app.state.gateway.catalog.tokens = TokenCounter(cache_dir=tmp_path / "empty-cache")
        yield app, client
    upstream.behaviour.reset()


async def test_the_challenge_asks_for_the_ceiling_of_a_cjk_prompt(paid):
    _, client = paid
    accepted = await challenge(client, BODY)
    assert int(accepted["amount"]) == CEILING == 7178
    estimate = (
        await client.get(
            "/catalog/estimate",
            params={"service": "llm-4090", "input": json.dumps(BODY["input"])},
        )
    ).json()
    assert round(estimate["ceiling_cost_usd"] * 1_000_000) == CEILING
    # characters / 4 would have asked for the $0.003 minimum.
    assert estimate["estimated_cost_usd"] == 0.003


async def test_a_paid_cjk_job_is_charged_its_real_tokens_and_the_rest_is_credit(
    paid, chain, upstream
):
    _, client = paid
    accepted = await challenge(client, BODY)
    payer = chain.new_payer(CEILING)
    upstream.behaviour.prompt_tokens = 9_000
    response = await client.post("/run", json=BODY, headers=v2_header(chain, payer, accepted))
    assert response.status_code == 200, response.text
    job = response.json()
    cost = ceil_div(9_000 * 590_000 + 4 * 790_000, 1_000_000)
    assert round(job["cost_usd"] * 1_000_000) == cost == 5314
    assert await wallet_balance(client, payer) == CEILING - cost
