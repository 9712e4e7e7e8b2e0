"""A replica's upkeep: the jobs of a replica whose lease lapsed are requeued once or refunded,
a long job of a live replica is left alone, and a shutdown settles its own jobs at once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import insert

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import jobs
from gpubridge.jobs import leases
from gpubridge.jobs.status import JobStatus
from gpubridge.payments import ledger
from tests.http_api.conftest import use_upstream
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.openai_upstream import Upstream, serve_openai_upstream

CREDIT = 10_000_000
HOLD = 5_000


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with serve_openai_upstream() as server:
        yield server


def catalog(tmp_path: Path, upstream: Upstream) -> Path:
    return write_catalog(tmp_path / "catalog.yaml", use_upstream(upstream.base_url, async_llm=True))


@pytest.fixture
async def funded(
    database, database_url: str, tmp_path: Path, upstream: Upstream
) -> AsyncIterator[tuple[Any, Any, str]]:
    """(gateway, client, key): an app whose async LLM runs on the upstream, a funded key."""
    settings = settings_for(database_url, tmp_path, catalog(tmp_path, upstream))
    async with running_app(settings) as (app, client):
        key = await register(client)
        await app.state.gateway.grant("you@example.com", CREDIT)
        yield app.state.gateway, client, key


async def left_running(gw: Any, holder: str, *, progress: dict[str, Any] | None = None) -> str:
    """An async job that ``holder`` claimed an hour ago, its hold placed, never settled."""
    account = await gw.accounts.by_email("you@example.com")
    job_id = str(uuid.uuid4())
    long_ago = utcnow() - timedelta(hours=1)
    async with gw.db.begin() as conn:
        await ledger.hold(conn, account.id, HOLD, job_id=job_id)
        await conn.execute(
            insert(jobs).values(
                id=job_id,
                account_id=account.id,
                service="llm-4090",
                model="llama-3.1-8b-instant",
                input={"prompt": "Hello world"},
                status=JobStatus.RUNNING.value,
                hold_micros=HOLD,
                discount_percent=0,
                claimed_by=holder,
                progress=progress,
                created_at=long_ago,
                started_at=long_ago,
                updated_at=long_ago,
            )
        )
    return job_id


async def settled(client: Any, job_id: str) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:
            view: dict[str, Any] = (await client.get(f"/status/{job_id}")).json()
            if view["status"] in ("completed", "failed", "cancelled"):
                return view
            await anyio.sleep(0.02)


async def micros(client: Any, key: str) -> int:
    balance = (await client.get("/account/balance", headers=auth(key))).json()["balance"]
    return round(balance * 1_000_000)


async def test_a_long_job_of_a_live_replica_is_left_alone_and_recovered_once_its_lease_lapses(
    funded: tuple[Any, Any, str],
) -> None:
    gw, client, key = funded
    async with gw.db.begin() as conn:
        await leases.renew(conn, "gateway-elsewhere", ttl_s=60)
    job_id = await left_running(gw, "gateway-elsewhere", progress={"stage": "generating"})
    await gw.maintenance()
    assert (await client.get(f"/status/{job_id}")).json()["status"] == "running"
    async with gw.db.begin() as conn:
        await leases.renew(conn, "gateway-elsewhere", ttl_s=-1)
    await gw.maintenance()
    view = await settled(client, job_id)
    # It had reported progress: running it again could repeat output, so it is refunded.
    assert view["status"] == "failed" and view["error"]["code"] == "worker_lost"
    assert await micros(client, key) == CREDIT


async def test_an_async_job_of_a_crashed_replica_without_progress_runs_again_here(
    funded: tuple[Any, Any, str],
) -> None:
    gw, client, key = funded
    job_id = await left_running(gw, "gateway-crashed")
    await gw.maintenance()
    view = await settled(client, job_id)
    assert view["status"] == "completed", view
    assert await micros(client, key) == CREDIT - round(view["cost_usd"] * 1_000_000)


async def test_a_job_requeued_once_already_is_refunded_when_its_replica_dies_again(
    funded: tuple[Any, Any, str],
) -> None:
    gw, client, key = funded
    requeued = {"stage": "requeued", "reason": "worker_lost"}
    job_id = await left_running(gw, "gateway-crashed", progress=requeued)
    await gw.maintenance()
    view = await settled(client, job_id)
    assert view["status"] == "failed" and view["error"]["code"] == "worker_lost"
    assert await micros(client, key) == CREDIT


async def test_a_shutdown_refunds_its_running_jobs_and_gives_up_its_lease_at_once(
    database, database_url: str, tmp_path: Path
) -> None:
    with serve_openai_upstream(delay_s=30) as slow:
        settings = settings_for(
            database_url, tmp_path, catalog(tmp_path, slow), shutdown_grace_s=0.2
        )
        async with running_app(settings) as (app, client):
            key = await register(client)
            gw = app.state.gateway
            await gw.grant("you@example.com", CREDIT)
            answer = await client.post(
                "/run", json={"service": "llm-4090", "input": {"prompt": "hi"}}, headers=auth(key)
            )
            job_id = answer.json()["job_id"]
            with anyio.fail_after(10):
                while job_id not in gw.runner.started:
                    await anyio.sleep(0.01)
            with anyio.fail_after(5):
                await gw.stop()
            view = (await client.get(f"/status/{job_id}")).json()
            assert view["status"] == "failed" and view["error"]["code"] == "shutdown"
            assert await micros(client, key) == CREDIT
            async with gw.db.connect() as conn:
                assert await leases.live(conn) == []
