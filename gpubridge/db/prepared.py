"""Hot statements compiled once and run on the SQLite writer's own driver connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase


class Prepared:
    """A hot statement compiled once (on first use) to the SQLite driver's own SQL and run on
    the writer's driver connection: the same SQL and the same stored values (the column
    types' own conversions) as SQLAlchemy's, without its work on every execution.
    ``columns`` names what an INSERT sets; each row must give all of them."""

    _dialect = SQLiteDialect_pysqlite()

    def __init__(self, statement: UpdateBase, columns: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._columns = list(columns) if columns is not None else None
        self._sql: str | None = None
        self._order: list[tuple[str, Callable[[Any], Any] | None, Any, bool, Any]] = []

    def _compile(self) -> str:
        dialect = self._dialect
        compiled = self._statement.compile(dialect=dialect, column_keys=self._columns)
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            # What the column type stores for None (JSON's "null"), worked out once: most of
            # a new job's columns are None.
            stored_none = None if processor is None else processor(None)
            self._order.append((name, processor, bind.value, bind.required, stored_none))
        self._sql = compiled.string
        return self._sql

    def _values(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        values = []
        for name, processor, default, required, stored_none in self._order:
            value = params[name] if required else params.get(name, default)
            if processor is not None:
                value = stored_none if value is None else processor(value)
            values.append(value)
        return tuple(values)

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute with ``params``; the number of rows it changed. Driver errors are raised
        as SQLAlchemy's (``IntegrityError`` for a constraint), as ``conn.execute`` would."""
        sql = self._sql or self._compile()
        raw = conn.connection.dbapi_connection
        assert raw is not None
        try:
            return int(raw.execute(sql, self._values(params)).rowcount)
        except sqlite3.Error as exc:
            raise _wrapped(sql, exc) from exc

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        sql = self._sql or self._compile()
        raw = conn.connection.dbapi_connection
        assert raw is not None
        try:
            raw.executemany(sql, [self._values(row) for row in rows])
        except sqlite3.Error as exc:
            raise _wrapped(sql, exc) from exc


def _wrapped(sql: str, exc: sqlite3.Error) -> Exception:
    return DBAPIError.instance(sql, None, exc, sqlite3.Error, hide_parameters=True)
