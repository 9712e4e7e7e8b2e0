"""Statements sent through asyncpg itself: the engine's SQL and parameters, SQLAlchemy's
errors, a pool that keeps its connections."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import bindparam, func, insert, literal, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from gpubridge.db.direct import Direct, DirectStatement, connect_arguments
from gpubridge.db.engine import Database, utcnow
from gpubridge.db.tables import accounts, jobs

URL = "postgresql+asyncpg://someone:secret@db.example:5433/gateway?prepared_statement_cache_size=5"


def test_a_statement_binds_its_parameters_by_position_as_the_engine_does() -> None:
    engine = create_async_engine(URL)
    statement = select(
        bindparam("data", type_=jobs.c.input.type),
        literal(7),
        bindparam("name", type_=jobs.c.service.type),
        bindparam("data", type_=jobs.c.input.type),
    )
    direct = DirectStatement(statement, engine)
    assert direct.sql == str(statement.compile(dialect=engine.dialect))
    assert len(set(re.findall(r"\$\d+", direct.sql))) == 3  # a name used twice is one
    arguments = direct.arguments({"data": {"a": [1, None]}, "name": "s", "unused": 1})
    assert sorted(map(str, arguments)) == sorted(['{"a": [1, null]}', "7", "s"])
    with pytest.raises(KeyError, match="name"):
        direct.arguments({"data": {}})


def test_a_statement_that_leaves_a_column_to_its_python_default_is_refused() -> None:
    with pytest.raises(ValueError, match="every column"):
        DirectStatement(insert(accounts).values(id=bindparam("id")), create_async_engine(URL))


def test_connections_are_made_as_the_engines_but_without_its_own_options() -> None:
    args, options = connect_arguments(create_async_engine(URL))
    assert args == []
    assert options == {
        "host": "db.example",
        "port": 5433,
        "user": "someone",
        "password": "secret",
        "database": "gateway",
    }


@pytest.fixture
async def postgres(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(postgres_url, pool_size=3)
    await database.drop_all()
    await database.create_all()
    yield database
    await database.dispose()


def an_account() -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "webhook_secret": "s",
        "balance_micros": 0,
        "lifetime_spend_micros": 0,
        "daily_limit_micros": 1,
        "spend_day_micros": 0,
        "created_at": utcnow(),
        "auto_topup_enabled": 0,
        "auto_topup_armed": 1,
    }


ADD_ACCOUNT = (
    insert(accounts)
    .values({name: bindparam(name) for name in an_account()})
    .returning(accounts.c.id)
)


@pytest.mark.postgres
async def test_a_statement_commits_by_itself_with_the_rows_the_engine_writes(postgres) -> None:
    direct = postgres.direct
    assert direct is not None
    by_direct = an_account()
    by_engine = {**an_account(), "created_at": by_direct["created_at"]}
    assert (await direct.fetchrow(ADD_ACCOUNT, by_direct))["id"] == by_direct["id"]
    async with postgres.begin() as conn:
        await conn.execute(ADD_ACCOUNT, by_engine)
    async with postgres.connect() as conn:
        rows = {row.id: row._asdict() for row in await conn.execute(select(accounts))}
    written = [{**rows[made["id"]], "id": None} for made in (by_direct, by_engine)]
    assert written[0] == written[1]
    assert written[0]["created_at"] == by_direct["created_at"]


@pytest.mark.postgres
async def test_errors_are_sqlalchemys_and_keep_the_parameters_out(postgres) -> None:
    direct = postgres.direct
    account = an_account()
    account["webhook_secret"] = "very-secret-value"
    await direct.fetchrow(ADD_ACCOUNT, account)
    with pytest.raises(IntegrityError) as duplicate:
        await direct.fetchrow(ADD_ACCOUNT, account)
    assert "very-secret-value" not in str(duplicate.value)
    with pytest.raises(DBAPIError):
        await direct.fetchrow(
            select(literal(1) / bindparam("zero", type_=jobs.c.cost_micros.type)), {"zero": 0}
        )


@pytest.mark.postgres
async def test_the_pool_keeps_its_connections(postgres) -> None:
    direct = postgres.direct
    backend = select(func.pg_backend_pid())
    pids = {(await direct.fetchrow(backend, {}))[0] for _ in range(5)}
    assert len(pids) == 1  # one caller at a time: the same connection every time
    await direct.close()
    assert (await direct.fetchrow(backend, {}))[0] not in pids  # opened again


@pytest.mark.postgres
async def test_closing_ends_a_statement_that_outlives_the_grace(postgres) -> None:
    direct = postgres.direct
    slow = asyncio.create_task(direct.fetchrow(select(func.pg_sleep(30)), {}))
    await asyncio.sleep(0.3)
    async with asyncio.timeout(10):
        await direct.close(grace_s=0.1)
        with pytest.raises(DBAPIError):
            await slow


async def test_sqlite_has_no_direct_pool(tmp_path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    try:
        assert database.direct is None
    finally:
        await database.dispose()


def test_a_direct_pool_opens_nothing_until_used() -> None:
    direct = Direct(create_async_engine(URL), 2)
    assert direct._idle == [] and direct._busy == set()


PID = select(func.pg_backend_pid())


@pytest.mark.postgres
async def test_no_more_statements_run_at_once_than_the_pool_has_connections(postgres) -> None:
    direct = postgres.direct  # three connections
    slow = select(func.pg_backend_pid(), func.pg_sleep(0.05))
    async with asyncio.timeout(30):
        rows = await asyncio.gather(*(direct.fetchrow(slow, {}) for _ in range(12)))
    assert len({row[0] for row in rows}) == 3
    assert len(direct._idle) == 3 and not direct._busy


@pytest.mark.postgres
async def test_a_cancelled_statement_drops_its_connection_and_a_refused_one_keeps_it(
    postgres,
) -> None:
    direct = postgres.direct
    first = (await direct.fetchrow(PID, {}))[0]
    account = an_account()
    await direct.fetchrow(ADD_ACCOUNT, account)
    with pytest.raises(IntegrityError):
        await direct.fetchrow(ADD_ACCOUNT, account)
    assert (await direct.fetchrow(PID, {}))[0] == first  # refused: kept
    slow = asyncio.create_task(direct.fetchrow(select(func.pg_sleep(30)), {}))
    await asyncio.sleep(0.3)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert (await direct.fetchrow(PID, {}))[0] != first  # cancelled: never reused


@pytest.mark.postgres
async def test_a_connection_the_server_ended_fails_one_statement_then_is_replaced(
    postgres,
) -> None:
    direct = postgres.direct
    ended = (await direct.fetchrow(PID, {}))[0]
    async with postgres.connect() as conn:
        await conn.execute(select(func.pg_terminate_backend(ended)))
    await asyncio.sleep(0.2)
    try:
        again = (await direct.fetchrow(PID, {}))[0]
    except DBAPIError:
        again = (await direct.fetchrow(PID, {}))[0]
    assert again != ended
