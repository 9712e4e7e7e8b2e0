"""Alembic migrations on SQLite and PostgreSQL: they build exactly the schema of the tables
module, are idempotent, and leave nothing for autogenerate to find."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, text
from sqlalchemy.engine import Connection

from gpubridge.db import Database
from gpubridge.db.migrate import alembic_config, upgrade_to_head
from gpubridge.db.tables import metadata

MIGRATION_TIMEOUT_S = 60


async def empty(url: str) -> None:
    db = Database(url)
    try:
        await db.drop_all()
        async with db.begin() as conn:
            await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        await db.dispose()


@pytest.fixture
async def empty_database_url(database_url: str) -> AsyncIterator[str]:
    """A database with none of the gateway's tables and no migration history."""
    await empty(database_url)
    yield database_url
    await empty(database_url)


async def upgrade(url: str) -> None:
    async with asyncio.timeout(MIGRATION_TIMEOUT_S):
        await asyncio.to_thread(upgrade_to_head, url)


async def downgrade_to_base(url: str) -> None:
    async with asyncio.timeout(MIGRATION_TIMEOUT_S):
        await asyncio.to_thread(command.downgrade, alembic_config(url), "base")


async def on_connection(url: str, inspect_with: Any) -> Any:
    db = Database(url)
    try:
        async with db.connect() as conn:
            return await conn.run_sync(inspect_with)
    finally:
        await db.dispose()


def table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def versions(conn: Connection) -> list[str]:
    return [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]


def snapshot(conn: Connection) -> dict[str, Any]:
    """Every table's columns, keys, indexes and constraints, as the database reports them."""
    inspector = inspect(conn)
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table),
            "foreign_keys": sorted(repr(fk) for fk in inspector.get_foreign_keys(table)),
            "indexes": sorted(repr(ix) for ix in inspector.get_indexes(table)),
            "unique": sorted(repr(uq) for uq in inspector.get_unique_constraints(table)),
        }
    return schema


def differences(target: MetaData) -> Any:
    def compare(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        diffs: list[Any] = compare_metadata(context, target)
        return diffs

    return compare


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def test_upgrade_creates_exactly_the_tables_of_the_metadata(empty_database_url: str):
    assert await on_connection(empty_database_url, table_names) == set()
    await upgrade(empty_database_url)
    tables = await on_connection(empty_database_url, table_names)
    assert tables == set(metadata.tables) | {"alembic_version"}
    assert await on_connection(empty_database_url, versions) == [head_revision()]


async def test_upgrading_an_up_to_date_database_changes_nothing(empty_database_url: str):
    await upgrade(empty_database_url)
    before = await on_connection(empty_database_url, snapshot)
    await upgrade(empty_database_url)
    assert await on_connection(empty_database_url, snapshot) == before
    assert await on_connection(empty_database_url, versions) == [head_revision()]


async def test_the_migrated_schema_matches_the_metadata_so_no_migration_is_missing(
    empty_database_url: str,
):
    await upgrade(empty_database_url)
    assert await on_connection(empty_database_url, differences(metadata)) == []


async def test_the_comparison_finds_a_column_or_table_that_has_no_migration(
    empty_database_url: str,
):
    await upgrade(empty_database_url)
    changed = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["accounts"].append_column(Column("nickname", String(40), nullable=True))
    Table("coupons", changed, Column("id", Integer, primary_key=True))

    diffs = await on_connection(empty_database_url, differences(changed))
    found = {(d[0], d[2], d[3].name) if d[0] == "add_column" else (d[0], d[1].name) for d in diffs}
    assert found == {("add_column", "accounts", "nickname"), ("add_table", "coupons")}


async def test_downgrading_to_base_removes_every_table_and_upgrading_restores_them(
    empty_database_url: str,
):
    await upgrade(empty_database_url)
    await downgrade_to_base(empty_database_url)
    assert await on_connection(empty_database_url, table_names) == {"alembic_version"}
    assert await on_connection(empty_database_url, versions) == []

    await upgrade(empty_database_url)
    assert await on_connection(empty_database_url, differences(metadata)) == []
