"""Honest availability over HTTP: /catalog and /v1/models say what can run here now, and a job
that cannot is refused with 503 before any charge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gpubridge.catalog import availability
from tests.support.gateway_app import (
    auth,
    openai_backend,
    register,
    running_app,
    settings_for,
    write_catalog,
)
from tests.support.hf_cache import cache_model, use_hub

BLIP = "Salesforce/blip-image-captioning-large"
CAPTION = {"service": "caption", "input": {"image_url": "https://example.com/cat.png"}}
CREDIT = 10_000_000


@pytest.fixture
async def served(
    database: Any, database_url: str, tmp_path: Path, upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Any, Any, str, Path]]:
    """The packaged catalog, llm-4090 on the upstream, an empty Hugging Face cache, offline;
    (app, client, a funded key, the cache)."""
    hub = use_hub(monkeypatch, tmp_path / "hub", offline=True)

    def edit(data: dict[str, Any]) -> None:
        data["services"]["llm-4090"]["backends"] = [openai_backend("upstream", upstream.base_url)]

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as (app, client):
        key = await register(client)
        await app.state.gateway.grant("you@example.com", CREDIT)
        yield app, client, key, hub


async def balance_and_jobs(client: Any, key: str) -> tuple[float, int]:
    balance = (await client.get("/account/balance", headers=auth(key))).json()["balance"]
    jobs = (await client.get("/account/jobs", headers=auth(key))).json()["total"]
    return balance, jobs


async def test_the_catalog_says_which_services_and_models_can_run_and_why_not(served):
    _, client, _, _ = served
    services = {s["key"]: s for s in (await client.get("/catalog")).json()["services"]}

    llm = services["llm-4090"]
    assert llm["available"] is True and "unavailable_reason" not in llm
    assert all(m["available"] and "reason" not in m for m in llm["models"])

    caption = services["caption"]
    assert caption["available"] is False
    assert "model blip-large of caption is not downloaded" in caption["unavailable_reason"]
    assert "`gpubridge models pull blip-large`" in caption["unavailable_reason"]
    (blip,) = caption["models"]
    assert blip["available"] is False and BLIP in blip["reason"]


async def test_a_job_for_a_model_not_downloaded_offline_is_a_503_and_free(served):
    _, client, key, _ = served
    before = await balance_and_jobs(client, key)

    response = await client.post("/run", json=CAPTION, headers=auth(key))

    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "model_not_downloaded"
    assert error["model"] == "blip-large"
    assert "blip-large" in error["message"]
    assert "gpubridge models pull blip-large" in error["message"]
    assert await balance_and_jobs(client, key) == before


async def test_a_job_for_a_service_whose_runtime_is_not_installed_is_a_503_and_free(
    served, monkeypatch: pytest.MonkeyPatch
):
    app, client, key, _ = served
    installed = availability.is_installed
    monkeypatch.setattr(availability, "is_installed", lambda m: m != "PIL" and installed(m))
    app.state.gateway.availability.forget()
    before = await balance_and_jobs(client, key)

    response = await client.post("/run", json=CAPTION, headers=auth(key))

    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "runtime_not_installed"
    assert "no PIL" in error["message"]
    assert "pip install 'gpubridge[local]'" in error["message"]
    assert await balance_and_jobs(client, key) == before


async def test_a_model_downloaded_later_is_available_once_the_machine_is_read_again(served):
    app, client, _, hub = served
    cache_model(hub, BLIP, {"config.json": b"{}", "model.safetensors": b"0" * 64})
    app.state.gateway.availability.forget()

    services = {s["key"]: s for s in (await client.get("/catalog")).json()["services"]}

    assert services["caption"]["available"] is True
    assert services["caption"]["models"][0]["available"] is True


async def test_the_openai_model_list_says_the_same(served):
    _, client, _, _ = served
    models = {m["id"]: m for m in (await client.get("/v1/models")).json()["data"]}

    assert models["llama-3.1-8b-instant"]["available"] is True
    assert "unavailable_reason" not in models["llama-3.1-8b-instant"]
    whisper = models["whisper-large-v3-turbo"]
    assert whisper["available"] is False
    assert "gpubridge models pull whisper-large-v3-turbo" in whisper["unavailable_reason"]
    one = (await client.get("/v1/models/whisper-large-v3-turbo")).json()
    assert one == whisper
