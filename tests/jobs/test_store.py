"""Claiming queued jobs: each once, oldest first, no more of a service than a worker can run."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import insert

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts
from gpubridge.jobs import store
from gpubridge.jobs.status import JobStatus


async def queue(db: Any, services: list[str]) -> list[str]:
    """An account and one pending job per entry of ``services``, oldest first."""
    account_id = str(uuid.uuid4())
    now = utcnow()
    ids = []
    async with db.begin() as conn:
        await conn.execute(
            insert(accounts).values(
                id=account_id, webhook_secret="s", daily_limit_micros=1, created_at=now
            )
        )
        for i, service in enumerate(services):
            job = await store.insert_job(
                conn,
                created_at=now + timedelta(milliseconds=i),
                id=str(uuid.uuid4()),
                account_id=account_id,
                service=service,
                model="m",
                input={},
                status=JobStatus.PENDING.value,
                hold_micros=0,
            )
            ids.append(job.id)
    return ids


async def claim(db: Any, limit: int, per_service: dict[str, int] | None = None) -> list[Any]:
    async with db.begin() as conn:
        return await store.claim_pending(
            conn, "worker", limit, skip_locked=db.is_postgres, per_service=per_service
        )


async def test_jobs_are_claimed_once_oldest_first(database: Any) -> None:
    ids = await queue(database, ["a", "b", "a"])
    first = await claim(database, 2)
    assert [job.id for job in first] == ids[:2]
    assert all(job.status == JobStatus.RUNNING for job in first)
    assert [job.id for job in await claim(database, 5)] == ids[2:]
    assert await claim(database, 5) == []


async def test_a_worker_claims_no_more_of_a_service_than_it_can_run(database: Any) -> None:
    ids = await queue(database, ["llm", "llm", "llm", "image", "llm", "image"])
    claimed = await claim(database, 10, {"llm": 1, "image": 2, "video": 3})
    assert [job.id for job in claimed] == [ids[0], ids[3], ids[5]]
    assert await claim(database, 10, {"video": 1}) == []
    rest = await claim(database, 10, {"llm": 5})
    assert [job.id for job in rest] == [ids[1], ids[2], ids[4]]
