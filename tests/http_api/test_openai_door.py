"""An OpenAI-compatible request whose client goes away before its answer: the job is
cancelled and refunded, waiting or streaming, instead of running on and being charged."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from gpubridge.catalog import Catalog
from gpubridge.errors import NotFound
from gpubridge.http_api.openai_door import MODEL_ALIASES, model_for
from tests.http_api.conftest import use_upstream
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog

EMAIL = "leaves@example.com"
CREDIT = 10_000_000
CHAT = {"model": "llama-3.1-8b-instant", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
async def slow_gateway(
    database, database_url: str, tmp_path: Path, upstream
) -> AsyncIterator[tuple[Any, Any, str]]:
    """(app, client, key): the LLM upstream takes 30 s to answer."""
    catalog = write_catalog(tmp_path / "catalog.yaml", use_upstream(upstream.base_url))
    upstream.behaviour.delay_s = 30.0
    try:
        async with running_app(settings_for(database_url, tmp_path, catalog)) as (app, http):
            key = await register(http, EMAIL)
            await app.state.gateway.grant(EMAIL, CREDIT)
            yield app, http, key
    finally:
        upstream.behaviour.reset()


async def leave_after(app: Any, key: str, body: dict[str, Any], seconds: float) -> dict[str, str]:
    """POST ``body`` to /v1/chat/completions, hang up after ``seconds``; the answer's headers."""
    raw = json.dumps(body).encode()
    delivered = False
    start: dict[str, str] = {}

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(seconds)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update({k.decode(): v.decode() for k, v in message["headers"]})

    headers = {"host": "gpubridge.test", "content-type": "application/json", **auth(key)}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("gpubridge.test", 80),
    }
    with anyio.fail_after(20):
        await app(scope, receive, send)
    return start


async def settled(http: Any, job_id: str) -> dict[str, Any]:
    with anyio.fail_after(10):
        while True:
            job: dict[str, Any] = (await http.get(f"/status/{job_id}")).json()
            if job["status"] not in ("pending", "running"):
                return job
            await asyncio.sleep(0.05)


async def balance(http: Any, key: str) -> int:
    return round((await http.get("/account/balance", headers=auth(key))).json()["balance"] * 1e6)


async def test_a_client_that_leaves_a_waiting_chat_cancels_and_refunds_its_job(slow_gateway):
    app, http, key = slow_gateway
    headers = await leave_after(app, key, CHAT, 0.5)
    job = await settled(http, headers["x-gpubridge-job-id"])
    assert job["status"] == "cancelled"
    assert await balance(http, key) == CREDIT


async def test_a_client_that_leaves_a_streamed_chat_cancels_and_refunds_its_job(slow_gateway):
    app, http, key = slow_gateway
    headers = await leave_after(app, key, {**CHAT, "stream": True}, 0.5)
    job = await settled(http, headers["x-gpubridge-job-id"])
    assert job["status"] == "cancelled"
    assert await balance(http, key) == CREDIT


# -- OpenAI model names ---------------------------------------------------------------------------
API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ALIAS_ROW = re.compile(r"^\| (`[^|]+`) \| [^|]+ \| `([a-z0-9-]+)` \| default: `([^`]+)`")


def documented_alias_rows() -> dict[str, tuple[frozenset[str], str]]:
    """docs/api.md's table of OpenAI model names: service -> (names, default model)."""
    section = API_DOC.read_text("utf-8").split("### OpenAI model names", 1)[1].split("\n## ")[0]
    rows = {}
    for line in section.splitlines():
        match = ALIAS_ROW.match(line)
        if match:
            names = frozenset(re.findall(r"`([^`]+)`", match.group(1)))
            rows[match.group(2)] = (names, match.group(3))
    return rows


@pytest.mark.parametrize(
    "name", ["text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"]
)
def test_openai_embedding_names_mean_the_embedding_default_model(name: str) -> None:
    service = Catalog.load().service("embedding-l4")
    assert model_for(service, name) is None  # None: the job runs the service's default
    assert model_for(service, "bge-m3") == "bge-m3"


def test_a_name_of_another_services_alias_is_not_an_embedding_model() -> None:
    service = Catalog.load().service("embedding-l4")
    with pytest.raises(NotFound) as caught:
        model_for(service, "whisper-1")
    assert caught.value.code == "model_not_found"


def test_the_documented_table_of_openai_names_is_the_one_the_routes_use() -> None:
    catalog = Catalog.load()
    rows = documented_alias_rows()
    assert {key: names for key, (names, _) in rows.items()} == MODEL_ALIASES
    for key, (_, default) in rows.items():
        assert catalog.service(key).default_model.id == default, key
