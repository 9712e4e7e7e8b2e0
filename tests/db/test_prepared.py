"""A prepared statement stores exactly what SQLAlchemy stores for the same statement."""

from __future__ import annotations

import sqlite3

from sqlalchemy import Connection

from gpubridge.db.writer import Writer


async def test_a_prepared_statement_stores_what_sqlalchemy_stores(tmp_path):
    from datetime import UTC, datetime

    from sqlalchemy import bindparam, create_engine, insert, update

    from gpubridge.db.prepared import Prepared
    from gpubridge.db.tables import jobs, metadata

    path = tmp_path / "same.db"
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    row = {c.name: None for c in jobs.c} | {
        "account_id": "a",
        "service": "s",
        "model": "m",
        "input": {"prompt": "é", "n": [1, 2.5, None]},
        "status": "running",
        "hold_micros": 10**12,
        "discount_percent": 5,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "updated_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "expired": 0,
    }
    prepared = Prepared(insert(jobs), [c.name for c in jobs.c])
    writer = Writer(f"sqlite+aiosqlite:///{path}")
    ended = update(jobs).where(jobs.c.id == bindparam("which")).values(output=None, error={"a": 1})

    def both(conn: Connection) -> int:
        conn.exec_driver_sql(
            "INSERT INTO accounts (id, webhook_secret, balance_micros, lifetime_spend_micros,"
            " daily_limit_micros, created_at) VALUES ('a', 's', 0, 0, 0, '2026-01-01')"
        )
        conn.execute(insert(jobs), {**row, "id": "by-sqlalchemy"})
        prepared.run(conn, {**row, "id": "by-driver"})
        conn.execute(ended, {"which": "by-sqlalchemy"})
        return Prepared(ended).run(conn, {"which": "by-driver"})

    try:
        assert await writer.run(both) == 1
    finally:
        await writer.close()
    with sqlite3.connect(path) as conn:
        stored = {r[0]: r[1:] for r in conn.execute("SELECT * FROM jobs")}
    assert stored["by-driver"] == stored["by-sqlalchemy"]
