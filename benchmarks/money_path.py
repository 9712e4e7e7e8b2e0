"""What the paid path's two money transactions cost: admit (hold + job) and settle (finish +
capture), done by the money path (SQLite's group-committing writer, PostgreSQL's one statement
each) and, for comparison, as several statements inside one ``db.begin()`` transaction.

Prints, per database and concurrency, pairs (admit + settle) per second and the process's CPU
per pair (all threads: the event loop and the database threads).

    .venv/bin/python benchmarks/money_path.py [--pairs 2000] [--concurrency 1 16]
        [--database sqlite postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.gateway.money_path import MoneyPath
from gpubridge.jobs import store
from gpubridge.jobs.status import JobStatus
from gpubridge.payments import ledger
from gpubridge.payments.accounts import Accounts

PG_ADMIN_DSN = os.environ.get("GPUBRIDGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
HOLD = 3_000


def job_values(account: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "account_id": account,
        "service": "llm-4090",
        "model": "bench",
        "input": {"prompt": "Hello world", "max_tokens": 16},
        "status": JobStatus.RUNNING.value,
        "claimed_by": "bench",
        "hold_micros": HOLD,
        "discount_percent": 0,
    }


async def new_pair(money: MoneyPath, account: str) -> None:
    job = await money.admit(HOLD, utcnow().date(), **job_values(account))
    await money.settle(job, JobStatus.COMPLETED, output={"text": "hi"}, cost_micros=1_000)


async def old_pair(money: MoneyPath, account: str) -> None:
    """The same two transactions, each as several statements in one transaction."""
    db = money.db
    values = job_values(account)
    now = utcnow()
    async with db.begin() as conn:
        await ledger.hold(conn, account, HOLD, job_id=values["id"], today=now.date())
        job = await store.insert_job(conn, created_at=now, **values)
    async with db.begin() as conn:
        await ledger.lock_account(conn, account)
        done = await store.finish_job(
            conn, job, JobStatus.COMPLETED, output={"text": "hi"}, cost_micros=1_000
        )
        assert done is not None
        await ledger.capture(
            conn, account, job_id=job.id, held_micros=HOLD, cost_micros=1_000, held_on=now.date()
        )


async def measure(
    pair: Callable[[MoneyPath, str], Awaitable[None]],
    money: MoneyPath,
    account: str,
    pairs: int,
    concurrency: int,
) -> tuple[float, float]:
    left = [pairs]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await pair(money, account)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return pairs / wall, cpu / pairs * 1e6


async def run(url: str, name: str, pairs: int, concurrencies: list[int]) -> None:
    db = Database(url, pool_size=20)
    await db.create_all()
    money = MoneyPath(db)
    try:
        created = await Accounts(db, default_daily_limit_micros=10**15, cache_s=0).register(
            f"{uuid.uuid4().hex[:8]}@bench.example"
        )
        account = created.account.id
        async with db.begin() as conn:
            await ledger.credit(conn, account, 10**14, house="grants", memo="bench")
        for label, pair in (("money path", new_pair), ("statements", old_pair)):
            await measure(pair, money, account, min(200, pairs), 4)  # warm up
            for c in concurrencies:
                rate, cpu_us = await measure(pair, money, account, pairs, c)
                print(f"{name:<11} {label:<11} {c:>5} {rate:>10.0f} {cpu_us:>12.0f}", flush=True)
    finally:
        await money.close()
        await db.dispose()


async def fresh_pg() -> tuple[str, Callable[[], Awaitable[None]]]:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}", drop


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2000, help="admit + settle pairs per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--database", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite"]
    )
    args = parser.parse_args()
    print(f"{'database':<11} {'path':<11} {'conc':>5} {'pairs/s':>10} {'CPU us/pair':>12}")
    for name in args.database:
        if name == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
                await run(url, name, args.pairs, args.concurrency)
        else:
            url, drop = await fresh_pg()
            try:
                await run(url, name, args.pairs, args.concurrency)
            finally:
                await drop()


if __name__ == "__main__":
    asyncio.run(main())
