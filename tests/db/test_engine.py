"""The database engine: nothing it or its driver logs holds a secret, at any level."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gpubridge.payments.accounts import hash_key
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog

VERBOSE_LOGGERS = ("", "sqlalchemy.engine", "sqlalchemy.pool", "aiosqlite", "asyncpg", "httpx")


def logged_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), repr(record.__dict__)]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


async def test_keys_and_webhook_secrets_stay_out_of_debug_logs(
    database, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in VERBOSE_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    catalog = write_catalog(tmp_path / "catalog.yaml")
    async with running_app(settings_for(database_url, tmp_path, catalog)) as (_, client):
        key = await register(client, "owner@example.com")
        response = await client.get("/account/webhook-secret", headers=auth(key))
        assert response.status_code == 200, response.text
        webhook_secret = response.json()["webhook_secret"]
        response = await client.post("/account/regenerate-key", headers=auth(key))
        assert response.status_code == 200, response.text
        new_key = response.json()["api_key"]
        assert (await client.get("/account/balance", headers=auth(new_key))).status_code == 200

    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)
    secrets = [key, new_key, hash_key(key), hash_key(new_key), webhook_secret]
    for record in caplog.records:
        text = logged_text(record)
        leaked = [i for i, secret in enumerate(secrets) if secret in text]
        assert not leaked, f"secret {leaked} logged by {record.name}: {record.getMessage()[:300]}"
