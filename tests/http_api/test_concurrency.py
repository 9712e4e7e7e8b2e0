"""Money under concurrency, and several gateway replicas sharing one PostgreSQL database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gpubridge.db.tables import accounts, jobs, ledger_entries
from tests.http_api.conftest import use_upstream
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.openai_upstream import serve_openai_upstream

PROMPT = {"service": "llm-4090", "input": {"prompt": "Hello world", "max_tokens": 16}}
HOLD = 3_000  # the estimate of PROMPT: the LLM minimum charge


async def test_an_account_funded_for_n_jobs_gets_exactly_n_of_3n_concurrent_runs(gateway):
    app, client = gateway
    n = 8
    key = await register(client)
    await app.state.gateway.grant("you@example.com", n * HOLD)
    responses = await asyncio.gather(
        *(client.post("/run", json=PROMPT, headers=auth(key)) for _ in range(3 * n))
    )
    accepted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 402]
    assert len(accepted) == n, [r.text for r in responses if r.status_code not in (200, 402)]
    assert len(refused) == 2 * n
    assert all(r.json()["error"]["code"] == "insufficient_credits" for r in refused)
    assert all(r.json()["status"] == "completed" for r in accepted)

    db = app.state.gateway.db
    async with db.connect() as conn:
        captured = await conn.scalar(select(func.sum(jobs.c.cost_micros)))
        job_count = await conn.scalar(select(func.count()).select_from(jobs))
        balance = await conn.scalar(select(accounts.c.balance_micros))
        entries = await conn.scalar(select(func.sum(ledger_entries.c.available_delta)))
        held = await conn.scalar(select(func.sum(ledger_entries.c.held_delta)))
    assert job_count == n
    assert balance >= 0
    assert balance == n * HOLD - captured
    assert entries == balance
    assert held == 0


@pytest.mark.postgres
async def test_two_gateway_replicas_on_one_postgres_claim_each_job_once(
    postgres_url: str, tmp_path: Path
):
    from gpubridge.db import Database

    db = Database(postgres_url)
    await db.drop_all()
    await db.create_all()
    await db.dispose()
    jobs_total = 24
    with serve_openai_upstream(delay_s=0.05) as upstream:
        catalog = write_catalog(
            tmp_path / "catalog.yaml", use_upstream(upstream.base_url, async_llm=True)
        )
        first_settings = settings_for(postgres_url, tmp_path / "a", catalog)
        second_settings = settings_for(postgres_url, tmp_path / "b", catalog)
        async with (
            running_app(first_settings) as (app_a, client_a),
            running_app(second_settings) as (app_b, _client_b),
        ):
            key = await register(client_a)
            await app_a.state.gateway.grant("you@example.com", 10_000_000)
            dispatchers = [app_a.state.gateway.dispatcher, app_b.state.gateway.dispatcher]
            # Queue every job first, then let both replicas race for them.
            for dispatcher in dispatchers:
                await dispatcher.stop()
            ids = [
                (await client_a.post("/run", json=PROMPT, headers=auth(key))).json()["job_id"]
                for _ in range(jobs_total)
            ]
            for dispatcher in dispatchers:
                dispatcher.start()
            async with asyncio.timeout(30):
                while True:
                    async with app_a.state.gateway.db.connect() as conn:
                        done = await conn.scalar(
                            select(func.count())
                            .select_from(jobs)
                            .where(jobs.c.status == "completed")
                        )
                    if done == jobs_total:
                        break
                    await asyncio.sleep(0.05)
            async with app_a.state.gateway.db.connect() as conn:
                claimers = (await conn.execute(select(jobs.c.claimed_by))).scalars().all()
                captures = await conn.scalar(
                    select(func.count())
                    .select_from(ledger_entries)
                    .where(ledger_entries.c.kind == "capture")
                    .where(ledger_entries.c.account_id.is_not(None))
                )
            workers = {
                app_a.state.gateway.dispatcher.worker_id,
                app_b.state.gateway.dispatcher.worker_id,
            }
    chat_calls = [
        r for r in upstream.behaviour.requests if r.get("path", "").endswith("/chat/completions")
    ]
    assert len(ids) == len(set(ids)) == jobs_total
    assert captures == jobs_total
    assert set(claimers) == workers  # both replicas took part
    assert len(chat_calls) == jobs_total  # and no job ran twice
