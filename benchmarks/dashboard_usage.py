"""How long the dashboard's usage report and spending chart take for a busy account.

Fills a fresh database with one account's jobs over the last 30 days (each with its ledger
hold, capture and release, as the runner writes them, spread over services and days), then
times the report's two grouped queries (``gateway.usage``) and the pygal chart it draws.

    .venv/bin/python benchmarks/dashboard_usage.py [--jobs 1000 20000] [--repeat 20]

On SQLite (a file in a temporary directory); the queries are the same on PostgreSQL, where
tests/payments/test_spending.py runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.db.tables import jobs, ledger_entries
from gpubridge.gateway.usage import usage_report
from gpubridge.http_api.dashboard_charts import spending_chart
from gpubridge.payments.accounts import Account, Accounts

SERVICES = ["llm-4090", "embedding-l4", "whisper-l4", "image-4090", "tts-l4", "caption"]


async def fill(db: Database, count: int) -> str:
    accounts = Accounts(db, default_daily_limit_micros=10**10, cache_s=0)
    account_id = (await accounts.register(f"bench-{uuid.uuid4().hex[:8]}@example.com")).account.id
    rng = random.Random(7)
    now = utcnow()
    job_rows, entries = [], []
    for _ in range(count):
        job_id = str(uuid.uuid4())
        when = now - timedelta(seconds=rng.randrange(29 * 86_400))
        hold = rng.randrange(3_000, 100_000)
        cost = rng.randrange(1_000, hold)
        service = rng.choice(SERVICES)
        job_rows.append(
            {
                "id": job_id,
                "account_id": account_id,
                "service": service,
                "model": "m",
                "input": {},
                "status": "completed",
                "hold_micros": hold,
                "cost_micros": cost,
                "discount_percent": 0,
                "execution_ms": rng.randrange(50, 5_000),
                "created_at": when,
                "updated_at": when,
            }
        )
        posting = str(uuid.uuid4())
        for kind, phase, available, held, house in [
            ("hold", "hold", -hold, hold, None),
            ("capture", "settle", 0, -cost, None),
            ("capture", None, cost, 0, "revenue"),
            ("release", "release", hold - cost, -(hold - cost), None),
        ]:
            entries.append(
                {
                    "account_id": None if house else account_id,
                    "house": house,
                    "posting_id": posting,
                    "job_id": job_id,
                    "job_phase": phase,
                    "kind": kind,
                    "available_delta": available,
                    "held_delta": held,
                    "memo": "",
                    "reference": None,
                    "created_at": when,
                }
            )
    async with db.begin() as conn:
        for start in range(0, count, 2_000):
            await conn.execute(insert(jobs), job_rows[start : start + 2_000])
        for start in range(0, len(entries), 8_000):
            await conn.execute(insert(ledger_entries), entries[start : start + 8_000])
    return account_id


async def measure(url: str, count: int, repeat: int) -> None:
    db = Database(url)
    await db.create_all()
    try:
        account_id = await fill(db, count)
        account = Account(account_id, None, 0, "")
        report_ms, chart_ms = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            report = await usage_report(db, account)
            report_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            chart = spending_chart(report)
            chart_ms.append((time.perf_counter() - started) * 1000)
        assert chart is not None and sum(s.jobs for s in report.services) == count
        print(
            f"sqlite  jobs {count:>6}  usage report p50 "
            f"{statistics.median(report_ms):7.1f} ms  max {max(report_ms):7.1f} ms  "
            f"chart p50 {statistics.median(chart_ms):6.1f} ms  svg {len(str(chart)) // 1024} KiB"
        )
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1_000, 20_000])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.jobs:
            url = f"sqlite+aiosqlite:///{Path(tmp) / f'usage-{count}.db'}"
            asyncio.run(measure(url, count, args.repeat))


if __name__ == "__main__":
    main()
