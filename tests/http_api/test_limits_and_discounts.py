"""Volume discounts and the daily spending limit are applied when the job's hold is placed;
vanished workers' jobs are failed and refunded."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import insert, update

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts, jobs
from gpubridge.jobs.status import JobStatus
from gpubridge.payments import ledger
from tests.support.gateway_app import auth, register

PROMPT = {"service": "llm-4090", "input": {"prompt": "Hello world", "max_tokens": 16}}


async def set_lifetime_spend(app, micros: int) -> None:
    async with app.state.gateway.db.begin() as conn:
        await conn.execute(update(accounts).values(lifetime_spend_micros=micros))


async def test_a_bronze_account_pays_five_percent_less(gateway):
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", 10_000_000)
    await set_lifetime_spend(app, 100_000_000)
    tier = (await client.get("/account/balance", headers=auth(key))).json()["volume_discount"]
    assert tier == {"tier": "Bronze", "discount_percent": 5}
    job = (await client.post("/run", json=PROMPT, headers=auth(key))).json()
    assert job["estimated_cost_usd"] == 0.00285
    assert job["cost_usd"] == 0.00285


async def test_a_gold_account_pays_fifteen_percent_less(gateway):
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", 10_000_000)
    await set_lifetime_spend(app, 1_000_000_000)
    job = (await client.post("/run", json=PROMPT, headers=auth(key))).json()
    assert job["cost_usd"] == 0.00255


async def test_a_job_past_the_daily_limit_is_refused_without_charge(gateway):
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", 100_000_000)
    assert (
        await client.post("/account/spending-limit", json={"daily_limit": 1}, headers=auth(key))
    ).status_code == 200
    big = {"service": "llm-4090", "input": {"prompt": "x" * 4000, "max_tokens": 8192}}
    quote = (await client.get("/catalog/estimate", params={"service": "llm-4090"})).status_code
    assert quote == 200
    # 8192 output tokens of the 70B cost under $1; run enough of them to reach the limit.
    statuses = []
    for _ in range(400):
        response = await client.post("/run", json=big, headers=auth(key))
        statuses.append(response.status_code)
        if response.status_code != 200:
            break
    refused = response.json()["error"]
    assert response.status_code == 402
    assert refused["code"] == "daily_limit_exceeded"
    spend = (await client.get("/account/balance", headers=auth(key))).json()
    assert spend["daily_spend"] <= 1.0
    assert round((100 - spend["balance"]) * 1e6) == round(spend["daily_spend"] * 1e6)


async def test_jobs_of_a_vanished_worker_are_failed_and_refunded(gateway):
    app, client = gateway
    key = await register(client)
    gw = app.state.gateway
    await gw.grant("you@example.com", 10_000_000)
    account = await gw.accounts.authenticate(key)
    job = {"id": str(uuid.uuid4())}
    long_ago = utcnow() - timedelta(hours=1)
    # A job that a crashed replica left running long ago: its hold placed, never settled.
    async with gw.db.begin() as conn:
        await ledger.hold(conn, account.id, 5_000, job_id=job["id"])
        await conn.execute(
            insert(jobs).values(
                id=job["id"],
                account_id=account.id,
                service="llm-4090",
                model="llama-3.1-8b-instant",
                input={"prompt": "Hello world"},
                status=JobStatus.RUNNING.value,
                hold_micros=5_000,
                discount_percent=0,
                claimed_by="a-replica-that-crashed",
                created_at=long_ago,
                started_at=long_ago,
                updated_at=long_ago,
            )
        )
    await gw.maintenance()
    status = (await client.get(f"/status/{job['id']}")).json()
    assert status["status"] == "failed"
    assert status["error"]["code"] == "worker_lost"
    balance = (await client.get("/account/balance", headers=auth(key))).json()["balance"]
    assert balance == 10  # the hold came back whole
