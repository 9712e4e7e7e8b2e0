"""Async database engine: SQLite (one writer connection) or PostgreSQL (a pool)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gpubridge.db.direct import Direct
from gpubridge.db.logs import keep_secrets_out_of_logs
from gpubridge.db.tables import metadata


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class Database:
    """Owns the SQLAlchemy async engine and hands out transactions."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        # Bound parameters hold key hashes, webhook secrets and payment data: never log them
        # (nor put them in exception messages), whatever the log level.
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.is_sqlite:
            _ensure_sqlite_dir(url)
            # One connection: SQLite has one writer, and a pool of writers fighting over the
            # lock costs far more (seconds of p99) than queueing on one connection.
            kwargs.update(pool_size=1, max_overflow=0, pool_timeout=60)
        else:
            # No ping before each checkout (a round trip, ~0.3 ms, on every transaction): a
            # connection the server dropped fails the one transaction that finds it, and that
            # failure invalidates the pool, so the next transactions reconnect.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self.direct = Direct(self.engine, pool_size) if self.is_postgres else None
        """PostgreSQL's pool for the hot statements sent through asyncpg itself (see
        ``direct``); None on SQLite."""
        keep_secrets_out_of_logs(self.engine, sqlite=self.is_sqlite)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction that commits on exit (rolls back on error)."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (autobegin; nothing is committed)."""
        async with self.engine.connect() as conn:
            yield conn

    async def create_all(self) -> None:
        """Create missing tables (tests and first start; production uses Alembic)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def drop_all(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)

    async def dispose(self) -> None:
        if self.direct is not None:
            await self.direct.close()
        await self.engine.dispose()


def _ensure_sqlite_dir(url: str) -> None:
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL keeps its data in (relative to the working directory when the URL
    says so); None for another database or an in-memory one."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1] if "///" in url else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def printable_url(url: str) -> str:
    """``url`` as it may be shown: the SQLite file's absolute path, or the URL with its
    password masked."""
    path = sqlite_file(url)
    if path is not None:
        return str(path.resolve())
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(a database URL that cannot be parsed)"


SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
    # A commit never copies the write-ahead log into the database file: a task of its own
    # does, off the request path (see ``checkpoint.WalCheckpoints``).
    "PRAGMA wal_autocheckpoint=0",
)
"""What every connection of the gateway to a SQLite database sets first."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()
