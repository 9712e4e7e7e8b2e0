"""Hot statements sent on PostgreSQL through asyncpg itself.

SQLAlchemy's async engine costs each statement a pool checkout through a greenlet, a look-up
in its compiled cache, its parameter processing and its result layers: a few tenths of a
millisecond, twice on every paid request. ``Direct`` runs a SQLAlchemy statement compiled once
with the engine's dialect (the very SQL text the engine sends, with the same parameter
processing) on a pool of plain asyncpg connections, where asyncpg's statement cache prepares it
once per connection.

Its errors are SQLAlchemy's: a constraint violation is an ``IntegrityError``, any other
database error a ``DBAPIError``, neither showing the parameters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

if TYPE_CHECKING:
    import asyncpg

_REQUIRED = object()

SQLALCHEMY_ONLY_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func")
"""Connect options of SQLAlchemy's own asyncpg connection wrapper, not of asyncpg.connect."""


def connect_arguments(engine: AsyncEngine) -> tuple[list[Any], dict[str, Any]]:
    """What ``asyncpg.connect`` takes to reach the engine's server as the engine does."""
    args, options = engine.dialect.create_connect_args(engine.url)
    for name in SQLALCHEMY_ONLY_OPTIONS:
        options.pop(name, None)
    return list(args), dict(options)


class DirectStatement:
    """A statement compiled for asyncpg: its SQL (``$n`` parameters) and how named values
    become its positional arguments."""

    def __init__(self, statement: ClauseElement, engine: AsyncEngine) -> None:
        dialect = engine.dialect
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        names = compiled.positiontup
        if names is None:
            raise ValueError("the dialect does not compile positional parameters")
        if compiled.insert_prefetch or compiled.update_prefetch:
            # The engine computes these per execution; here they would be sent as NULL.
            raise ValueError("a direct statement gives every column's value itself")
        self.sql = compiled.string
        binds = compiled.binds
        required = {bind.key for bind in binds.values() if bind.required}
        fixed = compiled.construct_params(dict.fromkeys(required)) or {}
        # Per parameter, in order: the key a caller gives it by (a required one) or the value
        # the statement gives it, and the type's processing of the value.
        self._slots: list[tuple[str, Any, Callable[[Any], Any] | None]] = [
            (
                binds[name].key,
                _REQUIRED if binds[name].required else fixed[name],
                binds[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name in names
        ]

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for ``params`` (a ``KeyError`` names a missing one)."""
        values = []
        for key, fixed, process in self._slots:
            value = params[key] if fixed is _REQUIRED else fixed
            values.append(process(value) if process is not None else value)
        return values


class Direct:
    """Plain asyncpg connections to the engine's server, opened as statements need them:
    ``max_size`` statements at once at most, each on a connection of its own, which is kept
    for the next (as many as were ever busy together).

    A connection is never shared and never reset: the statements sent on it each commit by
    themselves and change nothing of the session. One whose statement was cancelled or lost
    its connection is dropped, not reused; one the server refused a statement on is kept."""

    def __init__(self, engine: AsyncEngine, max_size: int) -> None:
        self.engine = engine
        self.max_size = max_size
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[asyncpg.Connection] = []
        self._busy: set[asyncpg.Connection] = set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._compiled: dict[int, tuple[ClauseElement, DirectStatement]] = {}

    def compiled(self, statement: ClauseElement) -> DirectStatement:
        """``statement`` compiled once for as long as it lives."""
        kept = self._compiled.get(id(statement))
        if kept is None or kept[0] is not statement:
            kept = (statement, DirectStatement(statement, self.engine))
            self._compiled[id(statement)] = kept
        return kept[1]

    async def fetchrow(
        self, statement: ClauseElement, params: Mapping[str, Any]
    ) -> asyncpg.Record | None:
        """Run ``statement`` by itself (it commits on its own) and return its first row."""
        import asyncpg

        direct = self.compiled(statement)
        arguments = direct.arguments(params)
        async with self._slots:
            conn = await self._connection()
            self._busy.add(conn)
            self._drained.clear()
            kept = False
            try:
                row: asyncpg.Record | None = await conn.fetchrow(direct.sql, *arguments)
                kept = True
                return row
            except asyncpg.PostgresError as exc:
                kept = True  # the server refused the statement; the connection is sound
                if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
                    raise IntegrityError(direct.sql, None, exc, hide_parameters=True) from exc
                raise DBAPIError(direct.sql, None, exc, hide_parameters=True) from exc
            except asyncpg.InterfaceError as exc:
                raise DBAPIError(direct.sql, None, exc, hide_parameters=True) from exc
            finally:
                self._busy.discard(conn)
                if kept and not conn.is_closed():
                    self._idle.append(conn)
                else:
                    conn.terminate()
                if not self._busy:
                    self._drained.set()

    async def _connection(self) -> asyncpg.Connection:
        import asyncpg

        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
        args, options = connect_arguments(self.engine)
        return await asyncpg.connect(*args, **options)

    async def close(self, grace_s: float = 5.0) -> None:
        """Close the connections once their statements end (after ``grace_s`` at most); the
        next statement opens new ones."""
        import asyncpg

        try:
            await asyncio.wait_for(self._drained.wait(), grace_s)
        except TimeoutError:
            for conn in list(self._busy):
                conn.terminate()
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await asyncio.wait_for(conn.close(), grace_s)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()
        # Fresh ones, for whichever event loop comes next.
        self._slots = asyncio.Semaphore(self.max_size)
        self._drained = asyncio.Event()
        self._drained.set()
