"""The local runtimes behind POST /run: a tiny random LLM and a tiny sentence encoder, loaded
from directories through the same code that loads real weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog

pytestmark = pytest.mark.slow


@pytest.fixture
async def local_gateway(database, database_url, tmp_path, tiny_llm_dir, tiny_sentence_dir):
    def edit(data: dict[str, Any]) -> None:
        for model in data["services"]["llm-4090"]["models"]:
            model["source"] = str(tiny_llm_dir)
        for model in data["services"]["embedding-l4"]["models"]:
            model["source"] = str(tiny_sentence_dir)

    catalog = write_catalog(Path(tmp_path) / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as pair:
        yield pair


async def test_the_local_llm_generates_and_is_charged_for_the_tokens_it_reports(local_gateway):
    app, client = local_gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", 10_000_000)
    body = {"service": "llm-4090", "input": {"prompt": "Hello world", "max_tokens": 6, "seed": 1}}
    response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "completed", job
    assert job["backend"] == "local-transformers"
    assert isinstance(job["output"]["text"], str)
    assert 0 < job["usage"]["completion_tokens"] <= 6
    assert job["usage"]["prompt_tokens"] > 0
    assert job["cost_usd"] == 0.003  # a few tokens cost less than the minimum charge
    balance = (await client.get("/account/balance", headers=auth(key))).json()["balance"]
    assert balance == pytest.approx(10 - 0.003, abs=1e-9)


async def test_the_local_encoder_embeds_text_and_lists(local_gateway):
    app, client = local_gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", 10_000_000)
    one = await client.post(
        "/run", json={"service": "embedding-l4", "input": {"text": "hello"}}, headers=auth(key)
    )
    assert one.status_code == 200, one.text
    output = one.json()["output"]
    assert len(output["embedding"]) == output["dimensions"]
    many = await client.post(
        "/run",
        json={"service": "embedding-l4", "input": {"text": ["a", "b", "c"]}},
        headers=auth(key),
    )
    assert [len(v) for v in many.json()["output"]["embeddings"]] == [output["dimensions"]] * 3
