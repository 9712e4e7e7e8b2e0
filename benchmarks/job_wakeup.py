"""How soon a waiter on one gateway replica learns that a job ended on another.

Two replicas (A and B, the real app with its lifespan, in one process) share a fresh
PostgreSQL database of their own (dropped afterwards); ``llm-4090`` is served by a loopback
OpenAI-compatible upstream that answers after ``--delay`` to twice that seconds (at random, so
that the end of a job falls anywhere between two polls). For each of ``--jobs`` sync jobs,
submitted on A (so A runs it), B calls ``Gateway.wait`` on it at once. The latency runs from
the moment A sends the job's end to the database (the money path's one settling statement, or
the COMMIT of a plain transaction) to B's ``wait`` returning the completed job. Two runs:

- **notices**: B's wait is woken by the PostgreSQL notice (its store poll set to 60 s, so only
  the notice can wake it within the run);
- **polling**: B's listener stopped and its wait reading the store every 0.05 s, as before
  notices existed.

It prints median, p90, p99 and max per run. The notice reaches B about when A's commit returns
(often before A's own code resumes); the rest is B reading the job (once to publish it, once to
return it) in an event loop it shares with A. The run stops with an error when a job does not
complete.

    .venv/bin/python benchmarks/job_wakeup.py [--jobs 50] [--delay 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpubridge.db import Database  # noqa: E402
from gpubridge.gateway import Gateway  # noqa: E402
from gpubridge.jobs import store  # noqa: E402
from gpubridge.jobs.status import JobStatus  # noqa: E402
from gpubridge.jobs.store import JobRecord  # noqa: E402

SETTLE_STATEMENT_START = "WITH acct AS"
"""How the money path's one-statement settlement on PostgreSQL begins (``money_statements``)."""
from tests.support.gateway_app import (  # noqa: E402
    openai_backend,
    register,
    running_app,
    settings_for,
    write_catalog,
)
from tests.support.openai_upstream import UpstreamBehaviour, serve_openai_upstream  # noqa: E402

PG_ADMIN_DSN = os.environ.get("GPUBRIDGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PROMPT = {"prompt": "Hello world", "max_tokens": 16}
NOTICE_POLL_S = 60.0
OLD_POLL_S = 0.05


async def admin_sql(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def commits_of_job_ends(a: Gateway, current: dict[str, str]) -> Iterator[dict[str, float]]:
    """For each job that A ends, when A sent the end to the database: on PostgreSQL the money
    path settles a job in one autocommitted statement, so the moment that statement is sent
    (its notice goes out with its commit, and may reach B before A's own code runs again).
    ``current`` names the job in flight (the jobs run one at a time). A job ended through a
    plain transaction (with auto top-up on) counts from its COMMIT instead."""
    committed: dict[str, float] = {}
    ending: dict[Any, str] = {}
    finish_job = store.finish_job

    async def finishing(conn: AsyncConnection, job: JobRecord, *args: Any, **kw: Any) -> Any:
        finished = await finish_job(conn, job, *args, **kw)
        if finished is not None:
            ending[conn.sync_connection] = job.id
        return finished

    def on_commit(connection: Any) -> None:
        job_id = ending.pop(connection, None)
        if job_id is not None:
            committed[job_id] = time.perf_counter()

    def on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(SETTLE_STATEMENT_START) and "job" in current:
            committed[current["job"]] = time.perf_counter()

    engine = a.db.engine.sync_engine
    store.finish_job = finishing  # type: ignore[assignment]
    event.listen(engine, "commit", on_commit)
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield committed
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)
        store.finish_job = finish_job  # type: ignore[assignment]


async def measure(
    a: Gateway, b: Gateway, upstream: UpstreamBehaviour, delay_s: float, jobs: int, poll_s: float
) -> list[float]:
    """Latencies in ms from A's commit of each job's end to B's wait returning it."""
    account = await a.accounts.by_email("bench@example.com")
    latencies = []
    current: dict[str, str] = {}
    with commits_of_job_ends(a, current) as committed:
        for _ in range(jobs):
            upstream.delay_s = random.uniform(delay_s, 2 * delay_s)
            # The upstream answers after at least delay_s: the job is named before it ends.
            job = (await a.submit(account, "llm-4090", dict(PROMPT))).job
            current["job"] = job.id
            ended = await b.wait(job, timeout_s=30, poll_s=poll_s)
            woke = time.perf_counter()
            if ended.status != JobStatus.COMPLETED or job.id not in committed:
                raise SystemExit(f"job {job.id} did not complete on A: {ended.status.value}")
            latencies.append((woke - committed[job.id]) * 1000)
    return latencies


def report(name: str, latencies: list[float]) -> None:
    print(
        f"{name:8} n={len(latencies):3}  median {statistics.median(latencies):7.2f} ms  "
        f"p90 {percentile(latencies, 0.9):7.2f} ms  p99 {percentile(latencies, 0.99):7.2f} ms  "
        f"max {max(latencies):7.2f} ms"
    )


async def run(args: argparse.Namespace, tmp: Path) -> None:
    database = f"gpubridge_wakeup_{uuid.uuid4().hex[:10]}"
    await admin_sql(f'CREATE DATABASE "{database}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{database}"
    try:
        db = Database(url)
        await db.create_all()
        await db.dispose()
        with serve_openai_upstream(delay_s=args.delay, record=False) as upstream:

            def edit(data: dict[str, Any]) -> None:
                for service in data["services"].values():
                    service["backends"] = []
                backend = openai_backend("upstream", upstream.base_url)
                data["services"]["llm-4090"]["backends"] = [backend]

            catalog = write_catalog(tmp / "catalog.yaml", edit)
            settings = [settings_for(url, tmp / name, catalog) for name in ("a", "b")]
            async with (
                running_app(settings[0]) as (app_a, client),
                running_app(settings[1]) as (
                    app_b,
                    _,
                ),
            ):
                a: Gateway = app_a.state.gateway
                b: Gateway = app_b.state.gateway
                await register(client, "bench@example.com")
                await a.grant("bench@example.com", 100_000_000)
                behaviour, delay = upstream.behaviour, args.delay
                await measure(a, b, behaviour, delay, 3, NOTICE_POLL_S)  # warm-up
                report("notices", await measure(a, b, behaviour, delay, args.jobs, NOTICE_POLL_S))
                await b.notices.stop()
                report("polling", await measure(a, b, behaviour, delay, args.jobs, OLD_POLL_S))
    finally:
        await admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50, help="jobs per run")
    parser.add_argument("--delay", type=float, default=0.05, help="least upstream answer time (s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpubridge-wakeup-") as tmp:
        asyncio.run(run(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
