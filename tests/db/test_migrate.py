"""The schema at start-up: a fresh database is created from the metadata and stamped, exactly
as the migrations would build it; one at the newest revision is left alone; an older one runs
the migrations."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.exc import DatabaseError

from gpubridge.db import Database
from gpubridge.db.migrate import HEAD_REVISION, VERSION_TABLE, alembic_config, prepare_schema
from gpubridge.db.tables import metadata
from tests.db.test_migrations import (
    differences,
    empty,
    on_connection,
    snapshot,
    upgrade,
    versions,
)

MIGRATION_TIMEOUT_S = 60


@pytest.fixture
async def fresh_url(database_url: str) -> AsyncIterator[str]:
    """A database with none of the gateway's tables and no migration history."""
    await empty(database_url)
    yield database_url
    await empty(database_url)


async def prepared(url: str) -> str:
    db = Database(url)
    try:
        return await prepare_schema(db)
    finally:
        await db.dispose()


def same_but_column_order(migrated: dict[str, Any], created: dict[str, Any]) -> bool:
    """The two schemas are the same but for the order of columns (a migration appends the
    columns it adds; the metadata lists them where they belong)."""

    def ordered(schema: dict[str, Any]) -> dict[str, Any]:
        return {t: {**s, "columns": sorted(s["columns"])} for t, s in schema.items()}

    first, second = ordered(migrated), ordered(created)
    for table in sorted(set(first) | set(second)):
        assert first.get(table) == second.get(table), table
    return True


def test_the_head_revision_is_the_newest_migration() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_current_head() == HEAD_REVISION


async def test_a_fresh_database_gets_the_schema_the_migrations_build(fresh_url: str):
    assert await prepared(fresh_url) == "created"
    created = await on_connection(fresh_url, snapshot)
    assert await on_connection(fresh_url, versions) == [HEAD_REVISION]
    assert await on_connection(fresh_url, differences(metadata)) == []

    # The same database emptied, then built by walking every migration.
    await asyncio.to_thread(command.downgrade, alembic_config(fresh_url), "base")
    db = Database(fresh_url)
    try:
        await db.drop_all()
    finally:
        await db.dispose()
    await upgrade(fresh_url)
    assert same_but_column_order(await on_connection(fresh_url, snapshot), created)


async def test_a_database_at_the_newest_revision_is_left_as_it_is(fresh_url: str):
    await upgrade(fresh_url)
    before = await on_connection(fresh_url, snapshot)
    assert await prepared(fresh_url) == "current"
    assert await on_connection(fresh_url, snapshot) == before


async def test_a_database_at_an_older_revision_is_upgraded_through_the_migrations(
    fresh_url: str,
):
    async with asyncio.timeout(MIGRATION_TIMEOUT_S):
        await asyncio.to_thread(command.upgrade, alembic_config(fresh_url), "0009")
    assert await on_connection(fresh_url, versions) == ["0009"]
    assert await prepared(fresh_url) == "upgraded"
    assert await on_connection(fresh_url, versions) == [HEAD_REVISION]
    assert await on_connection(fresh_url, differences(metadata)) == []


@pytest.mark.postgres
async def test_replicas_starting_together_on_a_fresh_database_create_it_once(postgres_url: str):
    await empty(postgres_url)
    try:
        outcomes = await asyncio.gather(*(prepared(postgres_url) for _ in range(3)))
        assert sorted(outcomes) == ["created", "current", "current"]
        assert await on_connection(postgres_url, versions) == [HEAD_REVISION]
    finally:
        await empty(postgres_url)


CATALOG = (
    "SELECT table_name || '.' || column_name || ' ' || data_type || ' '"
    " || is_nullable || ' ' || coalesce(column_default, '')"
    " FROM information_schema.columns WHERE table_schema = 'public'",
    "SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)"
    " FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
    "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "SELECT version_num FROM alembic_version",
)
"""What PostgreSQL says of a schema: columns with defaults, every constraint (checks too),
every index, and the revision."""


async def create_one_statement_at_a_time(url: str) -> None:
    """The schema as ``metadata.create_all`` builds it, stamped with the newest revision."""
    db = Database(url)
    try:
        await db.create_all()
        async with db.begin() as conn:
            await conn.run_sync(VERSION_TABLE.create)
            await conn.execute(VERSION_TABLE.insert().values(version_num=HEAD_REVISION))
    finally:
        await db.dispose()


async def postgres_catalog(url: str) -> list[list[str]]:
    db = Database(url)
    try:
        async with db.connect() as conn:
            return [sorted((await conn.exec_driver_sql(q)).scalars()) for q in CATALOG]
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_on_postgresql_the_one_script_builds_what_the_statements_one_by_one_build(
    postgres_url: str,
):
    await empty(postgres_url)
    try:
        assert await prepared(postgres_url) == "created"
        scripted = await postgres_catalog(postgres_url)
        await empty(postgres_url)
        await create_one_statement_at_a_time(postgres_url)
        one_by_one = await postgres_catalog(postgres_url)
    finally:
        await empty(postgres_url)
    assert scripted == one_by_one
    assert len(scripted[1]) > len(metadata.tables) and scripted[3] == [HEAD_REVISION]


def test_a_fresh_start_and_a_current_one_never_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gpubridge.db'}"
    script = (
        "import asyncio, sys\n"
        "from gpubridge.db import Database\n"
        "from gpubridge.db.migrate import prepare_schema\n"
        "async def prepared():\n"
        f"    db = Database({url!r})\n"
        "    try:\n"
        "        return await prepare_schema(db)\n"
        "    finally:\n"
        "        await db.dispose()\n"
        "print(asyncio.run(prepared()), asyncio.run(prepared()), 'alembic' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["created", "current", "False"]


def sqlite_schema(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall())
    finally:
        conn.close()


async def test_on_sqlite_the_one_connection_builds_what_the_statements_one_by_one_build(
    tmp_path: Path,
) -> None:
    scripted, one_by_one = tmp_path / "scripted.db", tmp_path / "one_by_one.db"
    db = Database(f"sqlite+aiosqlite:///{scripted}")
    sent: list[str] = []
    event.listen(db.engine.sync_engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    try:
        assert await prepare_schema(db) == "created"
    finally:
        await db.dispose()
    assert sent == []  # none of it through the engine, a hop to its thread per statement
    await create_one_statement_at_a_time(f"sqlite+aiosqlite:///{one_by_one}")
    assert sqlite_schema(scripted) == sqlite_schema(one_by_one)
    assert len(sqlite_schema(scripted)) > len(metadata.tables)
    assert await on_connection(f"sqlite+aiosqlite:///{scripted}", versions) == [HEAD_REVISION]


async def test_starts_together_on_a_fresh_sqlite_file_create_it_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gpubridge.db'}"
    outcomes = await asyncio.gather(*(prepared(url) for _ in range(3)))
    assert sorted(outcomes) == ["created", "current", "current"]
    assert await on_connection(url, versions) == [HEAD_REVISION]


async def test_a_sqlite_file_with_other_tables_only_gets_the_schema_beside_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gpubridge.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('kept')")
    conn.commit()
    conn.close()
    assert await prepared(f"sqlite+aiosqlite:///{path}") == "created"
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("kept",)]
    finally:
        conn.close()


async def test_a_file_that_is_not_a_database_is_refused_as_before(tmp_path: Path) -> None:
    path = tmp_path / "gpubridge.db"
    path.write_bytes(b"this is not a SQLite database, " * 64)
    with pytest.raises(DatabaseError, match="not a database"):
        await prepared(f"sqlite+aiosqlite:///{path}")
    assert path.read_bytes() == b"this is not a SQLite database, " * 64
