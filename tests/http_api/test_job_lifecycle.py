"""Async jobs: polling, cancel, failover, refunds, webhooks and the event stream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from tests.http_api.conftest import use_upstream
from tests.support.gateway_app import (
    auth,
    openai_backend,
    register,
    running_app,
    settings_for,
    write_catalog,
)
from tests.support.openai_upstream import closed_port, serve_openai_upstream

ASYNC_PROMPT = {"service": "llm-4090", "input": {"prompt": "Tell me a story", "max_tokens": 8}}


async def funded(app, client, micros: int = 10_000_000) -> str:
    key = await register(client)
    await app.state.gateway.grant("you@example.com", micros)
    return key


async def poll(client, job_id: str, until: set[str], timeout_s: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            job = (await client.get(f"/status/{job_id}")).json()
            if job["status"] in until:
                return job
            await asyncio.sleep(0.02)


async def balance(client, key: str) -> int:
    return round((await client.get("/account/balance", headers=auth(key))).json()["balance"] * 1e6)


@pytest.fixture
async def slow_upstream():
    with serve_openai_upstream(delay_s=0.5) as server:
        yield server


@pytest.fixture
async def async_gateway(database, database_url: str, tmp_path: Path, slow_upstream):
    catalog = write_catalog(
        tmp_path / "catalog.yaml", use_upstream(slow_upstream.base_url, async_llm=True)
    )
    async with running_app(settings_for(database_url, tmp_path, catalog)) as pair:
        yield pair


async def test_an_async_job_is_accepted_then_completes_and_is_charged(async_gateway):
    app, client = async_gateway
    key = await funded(app, client)
    accepted = await client.post("/run", json=ASYNC_PROMPT, headers=auth(key))
    assert accepted.status_code == 202
    body = accepted.json()
    assert set(body) >= {"job_id", "service", "status", "status_url", "estimated_cost_usd"}
    assert body["status"] in {"pending", "running"}
    assert body["status_url"] == f"/status/{body['job_id']}"
    job = await poll(client, body["job_id"], {"completed", "failed"})
    assert job["status"] == "completed", job
    assert job["execution_time_seconds"] >= 0.4
    assert await balance(client, key) == 10_000_000 - round(job["cost_usd"] * 1e6)


async def test_cancelling_a_running_job_refunds_it_in_full(async_gateway):
    app, client = async_gateway
    key = await funded(app, client)
    job_id = (await client.post("/run", json=ASYNC_PROMPT, headers=auth(key))).json()["job_id"]
    await poll(client, job_id, {"running"})
    cancelled = await client.post(f"/cancel/{job_id}", headers=auth(key))
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert await balance(client, key) == 10_000_000
    again = await client.post(f"/cancel/{job_id}", headers=auth(key))
    assert again.status_code == 409
    await asyncio.sleep(0.7)  # the upstream answers after its delay; the job must stay cancelled
    assert (await client.get(f"/status/{job_id}")).json()["status"] == "cancelled"
    assert await balance(client, key) == 10_000_000


async def test_only_the_owner_can_cancel(async_gateway):
    app, client = async_gateway
    key = await funded(app, client)
    other = await register(client, "other@example.com")
    job_id = (await client.post("/run", json=ASYNC_PROMPT, headers=auth(key))).json()["job_id"]
    assert (await client.post(f"/cancel/{job_id}", headers=auth(other))).status_code == 404


async def test_the_event_stream_carries_tokens_and_the_final_status(async_gateway):
    app, client = async_gateway
    key = await funded(app, client)
    job_id = (await client.post("/run", json=ASYNC_PROMPT, headers=auth(key))).json()["job_id"]
    async with asyncio.timeout(10):
        response = await client.get(f"/status/{job_id}/stream")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events: list[tuple[str, dict[str, Any]]] = []
    name = None
    for line in response.text.splitlines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and name:
            events.append((name, json.loads(line.split(":", 1)[1])))
    tokens = "".join(data["text"] for kind, data in events if kind == "token")
    final = [data for kind, data in events if kind == "status"][-1]
    assert final["status"] == "completed"
    assert tokens == final["output"]["text"]


async def test_a_failing_backend_fails_over_to_the_next(database, database_url, tmp_path):
    with serve_openai_upstream(fail_status=500) as broken, serve_openai_upstream() as healthy:

        def edit(data):
            data["services"]["llm-4090"]["backends"] = [
                openai_backend("broken", broken.base_url),
                openai_backend("healthy", healthy.base_url),
            ]

        catalog = write_catalog(tmp_path / "catalog.yaml", edit)
        async with running_app(settings_for(database_url, tmp_path, catalog)) as (app, client):
            key = await funded(app, client)
            job = (await client.post("/run", json=ASYNC_PROMPT, headers=auth(key))).json()
            assert job["status"] == "completed"
            assert job["backend"] == "healthy"
            cheap = await client.post(
                "/run", json=ASYNC_PROMPT, headers={**auth(key), "X-Priority": "fast"}
            )
            assert cheap.json()["status"] == "completed"


async def test_a_job_no_backend_can_serve_fails_and_is_refunded(database, database_url, tmp_path):
    def edit(data):
        data["services"]["llm-4090"]["backends"] = [
            openai_backend("down", f"http://127.0.0.1:{closed_port()}/v1"),
        ]

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as (app, client):
        key = await funded(app, client)
        response = await client.post("/run", json=ASYNC_PROMPT, headers=auth(key))
        job = response.json()
        assert job["status"] == "failed"
        assert job["error"]["code"] == "backend_error"
        assert job["refunded_usd"] == job["estimated_cost_usd"]
        assert await balance(client, key) == 10_000_000


async def test_a_finished_job_is_delivered_to_its_webhook_signed(database, database_url, tmp_path):
    received: list[tuple[bytes, dict[str, str]]] = []
    failures = {"left": 1}

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        if failures["left"]:
            failures["left"] -= 1
            return web.Response(status=503)
        return web.Response(status=204)

    web_app = web.Application()
    web_app.router.add_post("/hook", hook)
    runner = web.AppRunner(web_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with serve_openai_upstream() as upstream:
            catalog = write_catalog(tmp_path / "catalog.yaml", use_upstream(upstream.base_url))
            async with running_app(settings_for(database_url, tmp_path, catalog)) as (app, client):
                key = await funded(app, client)
                secret = (await client.get("/account/webhook-secret", headers=auth(key))).json()
                body = {**ASYNC_PROMPT, "webhook_url": f"http://127.0.0.1:{port}/hook"}
                job = (await client.post("/run", json=body, headers=auth(key))).json()
                async with asyncio.timeout(10):
                    while len(received) < 2:
                        await asyncio.sleep(0.02)
                    while True:  # the second attempt is recorded just after it returns
                        async with app.state.gateway.db.connect() as conn:
                            from gpubridge.jobs.store import webhook_attempts_for

                            attempts = await webhook_attempts_for(conn, job["id"])
                        if len(attempts) == 2:
                            break
                        await asyncio.sleep(0.02)
    finally:
        await runner.cleanup()
    payload, headers = received[-1]
    verified = Webhook(secret["webhook_secret"]).verify(payload, headers)
    assert verified["type"] == "job.completed"
    assert verified["data"]["id"] == job["id"]
    assert received[0][1]["webhook-id"] == received[1][1]["webhook-id"]
    assert [a["status_code"] for a in attempts] == [503, 204]


async def test_an_unsafe_webhook_url_is_a_422_before_any_charge(gateway):
    app, client = gateway
    key = await funded(app, client)
    body = {**ASYNC_PROMPT, "webhook_url": "file:///etc/passwd"}
    response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code == 422
    assert await balance(client, key) == 10_000_000
