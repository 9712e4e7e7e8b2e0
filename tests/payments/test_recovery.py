"""Key recovery by email token, and key regeneration: knowing an email is never enough."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import update
from starlette.applications import Starlette

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import recovery_tokens
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog

TOKEN_LINE = re.compile(r"^  ([A-Za-z0-9_-]{43})$", re.MULTILINE)


@pytest.fixture
async def gateway(database, database_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    catalog = write_catalog(tmp_path / "catalog.yaml")
    # A long key cache: a replaced key must stop working at once all the same.
    settings = settings_for(database_url, tmp_path, catalog, api_key_cache_s=60.0)
    async with running_app(settings) as pair:
        yield pair


async def outbox(app: Starlette) -> list[dict[str, Any]]:
    """The messages sent so far, once the mail in flight is written."""
    with anyio.fail_after(10):
        await app.state.recovery.drain()
    path = app.state.components.settings.data_dir / "outbox.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def request_token(app: Starlette, client: httpx.AsyncClient, email: str) -> str:
    before = len(await outbox(app))
    response = await client.post("/account/recover-reset", json={"email": email})
    assert response.status_code == 200, response.text
    mail = (await outbox(app))[before:]
    assert [m["to"] for m in mail] == [email]
    match = TOKEN_LINE.search(mail[0]["body"])
    assert match is not None
    return match.group(1)


async def balance(client: httpx.AsyncClient, key: str) -> int:
    return (await client.get("/account/balance", headers=auth(key))).status_code


async def test_known_and_unknown_emails_get_the_same_answer(gateway) -> None:
    app, client = gateway
    await register(client, "owner@example.com")
    for path in ("/account/recover", "/account/recover-reset"):
        known = await client.post(path, json={"email": "owner@example.com"})
        unknown = await client.post(path, json={"email": "nobody@example.com"})
        assert known.status_code == unknown.status_code == 200
        assert known.json() == unknown.json()
        assert "api_key" not in known.json()
    mail = await outbox(app)
    assert [m["to"] for m in mail] == ["owner@example.com", "owner@example.com"]
    assert "account exists" in mail[0]["body"]
    assert TOKEN_LINE.search(mail[1]["body"])


async def test_the_old_key_works_until_the_emailed_token_is_used(gateway) -> None:
    app, client = gateway
    old_key = await register(client, "owner@example.com")
    assert await balance(client, old_key) == 200  # now cached

    token = await request_token(app, client, "owner@example.com")
    assert await balance(client, old_key) == 200

    reset = await client.post(
        "/account/recover-reset", json={"email": "Owner@Example.com", "token": token}
    )
    assert reset.status_code == 200, reset.text
    new_key = reset.json()["api_key"]
    assert new_key.startswith("gpub_") and new_key != old_key
    assert await balance(client, old_key) == 401
    assert await balance(client, new_key) == 200

    again = await client.post(
        "/account/recover-reset", json={"email": "owner@example.com", "token": token}
    )
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "invalid_recovery_token"
    assert await balance(client, new_key) == 200


async def test_a_wrong_or_foreign_token_changes_nothing(gateway) -> None:
    app, client = gateway
    key = await register(client, "owner@example.com")
    await register(client, "other@example.com")
    token = await request_token(app, client, "owner@example.com")

    for email, attempt in [
        ("owner@example.com", "x" * 43),
        ("owner@example.com", token[:-1]),
        ("other@example.com", token),
        ("nobody@example.com", token),
        ("owner@example.com", ""),
    ]:
        response = await client.post(
            "/account/recover-reset", json={"email": email, "token": attempt}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_recovery_token"
    assert await balance(client, key) == 200

    # The token itself is still good for its own account.
    reset = await client.post(
        "/account/recover-reset", json={"email": "owner@example.com", "token": token}
    )
    assert reset.status_code == 200


async def test_an_expired_token_changes_nothing(gateway) -> None:
    app, client = gateway
    key = await register(client, "owner@example.com")
    token = await request_token(app, client, "owner@example.com")
    async with app.state.components.db.begin() as conn:
        await conn.execute(
            update(recovery_tokens).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    response = await client.post(
        "/account/recover-reset", json={"email": "owner@example.com", "token": token}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_recovery_token"
    assert await balance(client, key) == 200


async def test_regenerate_key_needs_the_current_key_and_rotates_it(gateway) -> None:
    _, client = gateway
    old_key = await register(client, "owner@example.com")
    assert (await client.post("/account/regenerate-key")).status_code == 401
    assert await balance(client, old_key) == 200
    response = await client.post("/account/regenerate-key", headers=auth(old_key))
    assert response.status_code == 200
    new_key = response.json()["api_key"]
    assert new_key != old_key
    assert await balance(client, old_key) == 401
    assert await balance(client, new_key) == 200
    again = await client.post("/account/regenerate-key", headers=auth(old_key))
    assert again.status_code == 401


async def test_bad_recovery_input_is_a_4xx(gateway) -> None:
    _, client = gateway
    cases = [
        ("/account/recover", {"email": 5}, 422),
        ("/account/recover", {}, 422),
        ("/account/recover", {"email": "not-an-email"}, 400),
        ("/account/recover-reset", {"email": "a@example.com", "extra": 1}, 422),
        ("/account/recover-reset", {"email": "a@example.com", "token": 7}, 422),
        ("/account/recover-reset", {"email": "a@example.com", "token": "t" * 500}, 400),
    ]
    for path, body, status in cases:
        response = await client.post(path, json=body)
        assert response.status_code == status, (path, body, response.text)
    assert (await client.post("/account/recover", content=b"{")).status_code == 400


async def test_recovery_is_rate_limited_per_email(database, database_url: str, tmp_path) -> None:
    catalog = write_catalog(tmp_path / "catalog.yaml")
    settings = settings_for(database_url, tmp_path, catalog, recovery_per_email_per_hour=2)
    async with running_app(settings) as (app, client):
        await register(client, "owner@example.com")
        statuses = [
            (await client.post("/account/recover", json={"email": "owner@example.com"})).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        limited = await client.post("/account/recover-reset", json={"email": "owner@example.com"})
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 3600
        other = await client.post("/account/recover", json={"email": "other@example.com"})
        assert other.status_code == 200
        assert len(await outbox(app)) == 2


async def test_no_token_or_key_is_logged(gateway, caplog) -> None:
    app, client = gateway
    caplog.set_level(logging.DEBUG)
    old_key = await register(client, "owner@example.com")
    token = await request_token(app, client, "owner@example.com")
    reset = await client.post(
        "/account/recover-reset", json={"email": "owner@example.com", "token": token}
    )
    new_key = reset.json()["api_key"]
    rotated = await client.post("/account/regenerate-key", headers=auth(new_key))
    newest = rotated.json()["api_key"]
    for secret in (old_key, token, new_key, newest):
        assert secret not in caplog.text


async def test_the_recovery_routes_are_documented(gateway) -> None:
    _, client = gateway
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/account/recover", "/account/recover-reset", "/account/regenerate-key"):
        assert "post" in paths[path]


async def test_concurrent_rotations_with_one_key_yield_one_new_key(gateway) -> None:
    _, client = gateway
    old_key = await register(client, "owner@example.com")
    with anyio.fail_after(20):
        responses = []

        async def rotate() -> None:
            responses.append(await client.post("/account/regenerate-key", headers=auth(old_key)))

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(rotate)
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) == 1
    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401]
    assert await balance(client, winners[0].json()["api_key"]) == 200
