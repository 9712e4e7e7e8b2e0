"""The database engine: nothing it or its driver logs holds a secret, at any level."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gpubridge.db.engine import printable_url, sqlite_file
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


def test_a_sqlite_url_names_its_file_and_shows_as_its_absolute_path(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'gpubridge.db'}"
    assert sqlite_file(url) == tmp_path / "data" / "gpubridge.db"
    assert printable_url(url) == str(tmp_path.resolve() / "data" / "gpubridge.db")
    assert sqlite_file("sqlite+aiosqlite:///relative.db") == Path("relative.db")
    assert printable_url("sqlite+aiosqlite:///relative.db") == str(Path("relative.db").resolve())


def test_in_memory_and_server_databases_have_no_file() -> None:
    assert sqlite_file("sqlite+aiosqlite://") is None
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file("postgresql+asyncpg://u:p@db.internal/gpubridge") is None


def test_a_printed_database_url_hides_its_password() -> None:
    shown = printable_url("postgresql+asyncpg://gpubridge:s3cret-pw@db.internal:5432/gpubridge")
    assert shown == "postgresql+asyncpg://gpubridge:***@db.internal:5432/gpubridge"
    assert "s3cret" not in printable_url("not a url s3cret")


@pytest.mark.postgres
async def test_postgresql_connections_the_server_dropped_cost_one_failure_then_reconnect(
    postgres_url: str,
) -> None:
    """No ping before each transaction: the first one after the server dropped the pool's
    connections (a restart) fails, and that invalidates the whole pool, so the next one
    connects afresh."""
    import asyncpg
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from gpubridge.db import Database

    db = Database(postgres_url, pool_size=2)
    try:
        assert db.engine.pool._pre_ping is False  # type: ignore[attr-defined]
        async with db.connect() as first, db.connect() as second:  # two pooled connections
            pids = [
                (await c.execute(text("SELECT pg_backend_pid()"))).scalar() for c in (first, second)
            ]
        admin = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", pids)
        finally:
            await admin.close()
        with pytest.raises(DBAPIError) as dropped:
            async with db.connect() as conn:
                await conn.execute(text("SELECT 1"))
        assert dropped.value.connection_invalidated
        async with db.connect() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar() not in pids
    finally:
        await db.dispose()
