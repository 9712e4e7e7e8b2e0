"""A job holds its ceiling and is charged what its runtime metered, never more than the hold;
the rest is released. On SQLite and PostgreSQL (the ledger check runs after each test)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from gpubridge.catalog.catalog import ceiling_output_tokens
from gpubridge.catalog.tokens import MESSAGE_ALLOWANCE, TokenCounter
from gpubridge.engines.base import Usage
from gpubridge.money import ceil_div
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.scripted_engine import ScriptedEngine, factory_for

CJK_20K = ("我们今天在北京的公园里散步。天气很好" * 1112)[:20_000]
VIDEO_RATE = 2400  # micro-USD per second of compute
FUNDS = 10_000_000


async def funded(app, client, micros: int = FUNDS) -> str:
    key = await register(client)
    await app.state.gateway.grant("you@example.com", micros)
    return key


async def balance_micros(client, key: str) -> int:
    return round((await client.get("/account/balance", headers=auth(key))).json()["balance"] * 1e6)


async def test_a_cjk_prompt_is_charged_for_the_tokens_the_upstream_counted(
    gateway, upstream, tmp_path: Path
):
    app, client = gateway
    # No tokenizer for the model on this machine: the hold counts the prompt's UTF-8 bytes.
    app.state.gateway.catalog.tokens = TokenCounter(cache_dir=tmp_path / "empty-cache")
    upstream.behaviour.prompt_tokens = 26_000
    try:
        key = await funded(app, client)
        body = {"service": "llm-4090", "input": {"prompt": CJK_20K, "max_tokens": 16}}
        response = await client.post("/run", json=body, headers=auth(key))
    finally:
        upstream.behaviour.reset()
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["usage"]["prompt_tokens"] == 26_000
    assert job["usage"]["completion_tokens"] == 4
    # $0.59 per million prompt tokens and $0.79 per million completion tokens (70B).
    cost = ceil_div(26_000 * 590_000 + 4 * 790_000, 1_000_000)
    held = ceil_div((60_000 + 2 * MESSAGE_ALLOWANCE) * 590_000 + 16 * 790_000, 1_000_000)
    assert round(job["cost_usd"] * 1e6) == cost == 15_344
    assert round(job["estimated_cost_usd"] * 1e6) == held
    assert await balance_micros(client, key) == FUNDS - cost


@pytest.fixture
async def video_app(database, database_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    """(app, client, engine): the video service served by a scripted engine."""
    engine = ScriptedEngine("scripted-video", tokens=())

    def edit(data: dict[str, Any]) -> None:
        for service in data["services"].values():
            service["backends"] = []
        data["services"]["video"]["backends"] = [{"name": "scripted-video", "type": "scripted"}]

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as (app, client):
        app.state.components.registry.register("scripted", factory_for({engine.name: engine}))
        yield app, client, engine


async def run_video(app, client, key: str) -> dict[str, Any]:
    body = {"service": "video", "input": {"prompt": "Waves rolling in"}}
    response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code == 202, response.text
    with anyio.fail_after(20):
        while True:
            job = (await client.get(f"/status/{response.json()['job_id']}")).json()
            if job["status"] not in ("pending", "running"):
                return job
            await anyio.sleep(0.05)


async def test_a_long_per_second_job_is_charged_for_the_seconds_it_ran(video_app):
    app, client, engine = video_app
    engine.usage = Usage(compute_seconds=400.0)  # the typical estimate is 125 seconds
    key = await funded(app, client)
    estimate = (await client.get("/catalog/estimate", params={"service": "video"})).json()
    assert estimate["estimated_cost_usd"] == 0.30
    assert estimate["ceiling_cost_usd"] == 600 * VIDEO_RATE / 1e6  # the 600 s job timeout

    job = await run_video(app, client, key)
    assert job["status"] == "completed", job
    assert job["estimated_cost_usd"] == 600 * VIDEO_RATE / 1e6
    assert job["cost_usd"] == 400 * VIDEO_RATE / 1e6
    assert await balance_micros(client, key) == FUNDS - 400 * VIDEO_RATE


async def test_metered_usage_above_the_hold_captures_the_hold_and_is_logged(
    video_app, caplog: pytest.LogCaptureFixture
):
    app, client, engine = video_app
    engine.usage = Usage(compute_seconds=5000.0)  # more than the time limit allows
    key = await funded(app, client)
    with caplog.at_level(logging.WARNING, logger="gpubridge.gateway.runner"):
        job = await run_video(app, client, key)
    assert job["status"] == "completed", job
    assert job["cost_usd"] == job["estimated_cost_usd"] == 600 * VIDEO_RATE / 1e6
    assert await balance_micros(client, key) == FUNDS - 600 * VIDEO_RATE
    warnings = [r for r in caplog.records if "exceeds the job's hold" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].metered_micros == 5000 * VIDEO_RATE  # type: ignore[attr-defined]


async def test_a_declared_max_seconds_is_both_the_time_limit_and_the_ceiling(
    database, database_url: str, tmp_path: Path
):
    gate = ScriptedEngine("scripted-video", tokens=(), gate=anyio.Event())  # never opened

    def edit(data: dict[str, Any]) -> None:
        for service in data["services"].values():
            service["backends"] = []
        video = data["services"]["video"]
        video["backends"] = [{"name": "scripted-video", "type": "scripted"}]
        video["max_seconds"] = 0.5

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as (app, client):
        app.state.components.registry.register("scripted", factory_for({gate.name: gate}))
        key = await funded(app, client)
        job = await run_video(app, client, key)
        assert job["status"] == "failed"
        assert job["error"]["code"] == "timeout"
        # One second (the minimum of $0.30 applies) was held, and all of it refunded.
        assert job["estimated_cost_usd"] == 0.30
        assert await balance_micros(client, key) == FUNDS


async def test_a_request_without_max_tokens_tells_the_backend_the_bound_its_hold_covers(
    gateway, upstream
):
    app, client = gateway
    key = await funded(app, client)
    upstream.behaviour.reset()
    body = {"service": "llm-4090", "input": {"prompt": "Hello world"}}
    response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    catalog = app.state.gateway.catalog
    service = catalog.service("llm-4090")
    bound = ceiling_output_tokens(service, service.default_model, {})
    assert bound > 0
    [sent] = [r for r in upstream.behaviour.requests if r["path"].endswith("/chat/completions")]
    assert sent["body"]["max_tokens"] == bound
