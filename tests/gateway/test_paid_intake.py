"""Paid requests whose settlement is confirmed after their exchange, on a local chain and on
SQLite and PostgreSQL: resolved concurrently they are credited and held once; refused when
their service can no longer run, with the payment left in the wallet account."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.http_api.test_x402 import wallet_state
from tests.http_api.test_x402_pending import SETTLE_TIMEOUT_S, mining_held
from tests.support.local_chain import LocalChain
from tests.support.openai_upstream import serve_openai_upstream
from tests.support.x402_app import PROMPT, challenge, paid_app, v2_header


@pytest.fixture(scope="module")
def upstream() -> Iterator[Any]:
    with serve_openai_upstream() as server:
        yield server


@pytest.fixture
def chain() -> Iterator[LocalChain]:
    yield LocalChain()


@pytest.fixture
async def paid(database, database_url: str, tmp_path: Path, upstream, chain) -> AsyncIterator[Any]:
    async with paid_app(
        chain, database_url, tmp_path, upstream.base_url, x402_settle_timeout_s=SETTLE_TIMEOUT_S
    ) as pair:
        yield pair


async def pending_request(client: Any, chain: LocalChain) -> tuple[str, Any, int]:
    """A paid request left settlement_pending, then mined: (job id, payer, price)."""
    accepted = await challenge(client)
    price = int(accepted["amount"])
    payer = chain.new_payer(price)
    with mining_held(chain):
        response = await client.post("/run", json=PROMPT, headers=v2_header(chain, payer, accepted))
        assert response.status_code == 202, response.text
        chain.mine()
    return response.json()["job_id"], payer, price


async def test_resolving_at_once_twice_credits_and_holds_once(paid, chain):
    app, client = paid
    gateway = app.state.gateway
    job_id, payer, price = await pending_request(client, chain)
    await asyncio.gather(*(gateway.resolve_pending_payments() for _ in range(3)))
    job = await gateway.wait(await gateway.get(job_id), 10)
    assert job.status.value == "completed"
    balance, jobs = await wallet_state(client, payer)
    assert [j["id"] for j in jobs] == [job_id]
    assert balance == price - job.cost_micros


async def test_a_request_its_service_can_no_longer_run_is_refused_and_keeps_the_payment(
    paid, chain
):
    app, client = paid
    gateway = app.state.gateway
    job_id, payer, price = await pending_request(client, chain)
    service = gateway.catalog.services["llm-4090"]
    gateway.catalog.services["llm-4090"] = service.model_copy(update={"backends": []})
    try:
        await gateway.resolve_pending_payments()
    finally:
        gateway.catalog.services["llm-4090"] = service
    status = (await client.get(f"/status/{job_id}")).json()
    assert status["status"] == "refused"
    assert "no backend" in status["error"]["message"]
    balance, jobs = await wallet_state(client, payer)
    assert jobs == []
    assert balance == price  # the payment stays in the wallet account
