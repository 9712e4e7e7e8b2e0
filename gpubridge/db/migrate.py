"""The database schema at start-up, and Alembic migrations run programmatically (``gpubridge db
upgrade``).

A start usually finds the database at the newest revision, or finds none of its tables: the
first is one query, and the second creates the tables from the metadata and records the newest
revision, as walking every migration would end (tests prove the two build the same schema); on
PostgreSQL through asyncpg, all of it is sent as one script, and a SQLite file is created by
one plain connection in one thread, without a hop to the driver's thread per statement.
Only a database at an older revision runs Alembic, which is then imported.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Column, Index, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement
from sqlalchemy.util import await_only

from gpubridge.db.engine import Database, sqlite_file
from gpubridge.db.tables import metadata

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"

HEAD_REVISION = "0014"
"""The newest migration's revision (tests check it against the migrations folder)."""

VERSION_TABLE = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
"""Alembic's record of the revision, as Alembic creates it."""

SCHEMA_LOCK = 0x67707562
"""The PostgreSQL advisory lock held while a start looks at, or creates, the schema."""

Outcome = Literal["created", "current", "upgraded"]


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Bring the database at ``url`` to the newest schema through the migrations (runs its own
    event loop)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


async def prepare_schema(db: Database) -> Outcome:
    """Bring ``db`` to the newest schema: ``created`` (it had none of the tables),
    ``current`` (already there) or ``upgraded`` (through the migrations)."""
    path = sqlite_file(db.url)
    if path is not None and await asyncio.to_thread(_created_sqlite_file, path):
        return "created"
    async with db.begin() as conn:
        if db.is_postgres:
            # Replicas starting together on an empty database: one creates, the others wait.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        state = await conn.run_sync(_state)
        if state == "empty":
            await conn.run_sync(_create)
            return "created"
    if state == HEAD_REVISION:
        return "current"
    await asyncio.to_thread(upgrade_to_head, db.url)
    return "upgraded"


def _state(conn: Connection) -> str:
    """``empty`` (none of the gateway's tables, no revision), the revision, or ``unknown``."""
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE.name not in tables:
        return "empty" if not tables & set(metadata.tables) else "unknown"
    versions = [row[0] for row in conn.execute(VERSION_TABLE.select())]
    return versions[0] if len(versions) == 1 else "unknown"


def _create(conn: Connection) -> None:
    asyncpg = conn.connection.driver_connection if conn.dialect.driver == "asyncpg" else None
    if asyncpg is not None:
        # Some forty statements in one round trip (asyncpg's simple query), not one each:
        # tens of milliseconds of a first start.
        await_only(asyncpg.execute(schema_script(conn.dialect)))
        return
    metadata.create_all(conn, checkfirst=False)
    VERSION_TABLE.create(conn, checkfirst=False)
    conn.execute(VERSION_TABLE.insert().values(version_num=HEAD_REVISION))


def _created_sqlite_file(path: Path) -> bool:
    """Create the schema in the SQLite file at ``path`` if it has none of the tables, in one
    transaction that holds the write lock (another process starting at once waits, then finds
    the tables). False when it has some, and when SQLite refuses the file: the usual path then
    says what the database holds, or what is wrong with it."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    except sqlite3.Error:
        return False
    try:
        conn.execute("BEGIN IMMEDIATE")
        found = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if found & {*metadata.tables, VERSION_TABLE.name}:
            conn.execute("ROLLBACK")
            return False
        for statement in schema_statements(_SQLITE):
            conn.execute(statement)
        conn.execute("COMMIT")
        return True
    except sqlite3.Error:
        return False  # rolled back as the connection closes
    finally:
        conn.close()


def schema_script(dialect: Dialect) -> str:
    """The statements that create every table and index and record the newest revision, as
    one script (what ``metadata.create_all`` sends one statement at a time)."""
    return ";\n".join(schema_statements(dialect))


def schema_statements(dialect: Dialect) -> list[str]:
    """The statements of ``schema_script``, one by one."""
    made: list[ExecutableDDLElement] = []
    for table in [*metadata.sorted_tables, VERSION_TABLE]:
        made.append(CreateTable(table))
        made.extend(CreateIndex(index) for index in sorted(table.indexes, key=_name))
    statements = [str(ddl.compile(dialect=dialect)).strip() for ddl in made]
    revision = VERSION_TABLE.insert().values(version_num=HEAD_REVISION)
    statements.append(str(revision.compile(dialect=dialect, compile_kwargs=_LITERAL)))
    return statements


_LITERAL = {"literal_binds": True}
_SQLITE = SQLiteDialect_pysqlite()


def _name(index: Index) -> str:
    return str(index.name)
