"""Two gateway replicas on one PostgreSQL database hear each other's job changes at once: a
waiter wakes, an idle replica claims, a cancelled job stops where it runs. Every poll interval
here is far longer than the bounds the tests wait, so only a notice can meet them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from sqlalchemy import func, select, text
from starlette.applications import Starlette

from gpubridge.db import Database
from gpubridge.db.tables import accounts, jobs, ledger_entries
from gpubridge.gateway import Gateway
from gpubridge.jobs.status import JobStatus
from gpubridge.mcp_server import build_server
from gpubridge.payments.ledger_check import check_ledger
from tests.http_api.conftest import use_upstream
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.openai_upstream import Upstream, serve_openai_upstream

pytestmark = pytest.mark.postgres

LONG_POLL_S = 60.0
CREDIT = 10_000_000
PROMPT = {"prompt": "Hello world", "max_tokens": 16}


@dataclass
class Replica:
    app: Starlette
    client: httpx.AsyncClient

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway


@pytest.fixture(scope="module")
def shared_upstream() -> Iterator[Upstream]:
    with serve_openai_upstream() as server:
        yield server


@pytest.fixture
def upstream(shared_upstream: Upstream) -> Upstream:
    shared_upstream.behaviour.reset()
    return shared_upstream


@asynccontextmanager
async def two_replicas(
    postgres_url: str, tmp_path: Path, upstream: Upstream, *, async_llm: bool = False
) -> AsyncIterator[tuple[Replica, Replica, str]]:
    """Replicas A and B (each polling the store only every minute), and an API key with
    credit."""
    db = Database(postgres_url)
    await db.drop_all()
    await db.create_all()
    await db.dispose()
    catalog = write_catalog(
        tmp_path / "catalog.yaml", use_upstream(upstream.base_url, async_llm=async_llm)
    )
    settings = [
        settings_for(postgres_url, tmp_path / name, catalog, dispatcher_poll_s=LONG_POLL_S)
        for name in ("a", "b")
    ]
    async with running_app(settings[0]) as a, running_app(settings[1]) as b:
        first, second = Replica(*a), Replica(*b)
        key = await register(first.client)
        await first.gateway.grant("you@example.com", CREDIT)
        assert first.gateway.notices.live and second.gateway.notices.live
        yield first, second, key
        async with first.gateway.db.connect() as conn:
            report = await check_ledger(conn)
        assert report.ok, report.summary()


async def submit(replica: Replica) -> Any:
    account = await replica.gateway.accounts.by_email("you@example.com")
    return (await replica.gateway.submit(account, "llm-4090", dict(PROMPT))).job


async def test_a_waiter_on_another_replica_wakes_as_soon_as_the_job_completes(
    postgres_url: str, tmp_path: Path, upstream: Upstream
) -> None:
    upstream.behaviour.delay_s = 0.3
    async with two_replicas(postgres_url, tmp_path, upstream) as (a, b, _key):
        job = await submit(a)  # a sync job: it runs on A
        task = a.gateway.dispatcher.task_for(job.id)
        assert task is not None
        ended: list[float] = []
        task.add_done_callback(lambda _task: ended.append(time.monotonic()))

        async def stream_on_b() -> list[dict[str, Any]]:
            return [item async for item in b.gateway.stream(job.id, poll_s=LONG_POLL_S)]

        with anyio.fail_after(10):
            streamed = asyncio.create_task(stream_on_b())
            waited = await b.gateway.wait(job, timeout_s=LONG_POLL_S, poll_s=LONG_POLL_S)
            woke = time.monotonic()
            events = await streamed
    assert waited.status == JobStatus.COMPLETED
    assert woke - ended[0] < 2.0
    last = events[-1]
    assert last["event"] == "status" and last["data"]["status"] == "completed"
    assert last["data"]["output"]  # the job's view, as a stream on A would end with it


async def test_a_job_queued_through_one_replica_is_claimed_at_once_by_an_idle_one(
    postgres_url: str, tmp_path: Path, upstream: Upstream
) -> None:
    async with two_replicas(postgres_url, tmp_path, upstream, async_llm=True) as (a, b, key):
        await a.gateway.dispatcher.stop()  # A takes no jobs: only B can run this one
        response = await a.client.post(
            "/run", json={"service": "llm-4090", "input": PROMPT}, headers=auth(key)
        )
        assert response.status_code == 202, response.text
        queued = await a.gateway.get(response.json()["job_id"])
        with anyio.fail_after(10):
            done = await a.gateway.wait(queued, timeout_s=LONG_POLL_S, poll_s=LONG_POLL_S)
        assert done.status == JobStatus.COMPLETED
        async with a.gateway.db.connect() as conn:
            claimed_by = await conn.scalar(select(jobs.c.claimed_by).where(jobs.c.id == done.id))
        assert claimed_by == b.gateway.dispatcher.worker_id


async def test_a_job_cancelled_through_another_replica_stops_where_it_runs_and_is_refunded_once(
    postgres_url: str, tmp_path: Path, upstream: Upstream
) -> None:
    upstream.behaviour.delay_s = 5.0  # longer than the job is given to stop
    async with two_replicas(postgres_url, tmp_path, upstream) as (a, b, key):
        job = await submit(a)
        task = a.gateway.dispatcher.task_for(job.id)
        assert task is not None
        waiter = asyncio.create_task(a.gateway.wait(job, timeout_s=LONG_POLL_S))
        with anyio.fail_after(5):
            while not upstream.behaviour.requests:  # the upstream has the request
                await asyncio.sleep(0.01)
        response = await b.client.post(f"/cancel/{job.id}", headers=auth(key))
        assert response.status_code == 200, response.text
        with anyio.fail_after(3):  # well within the dispatcher's own watch (10 s)
            await asyncio.wait({task})
            waited = await waiter
        assert task.cancelled()
        assert waited.status == JobStatus.CANCELLED  # A's waiter reads the end, no error
        async with a.gateway.db.connect() as conn:
            kinds = (
                await conn.execute(
                    select(ledger_entries.c.kind, func.count())
                    .where(ledger_entries.c.job_id == job.id)
                    .where(ledger_entries.c.account_id.is_not(None))
                    .group_by(ledger_entries.c.kind)
                )
            ).all()
            balance = await conn.scalar(select(accounts.c.balance_micros))
        assert dict(kinds) == {"hold": 1, "refund": 1}
        assert balance == CREDIT


async def test_a_replica_whose_listening_connection_is_killed_listens_again(
    postgres_url: str, tmp_path: Path, upstream: Upstream
) -> None:
    async with two_replicas(postgres_url, tmp_path, upstream, async_llm=True) as (a, b, key):
        listener = b.gateway.notices.listener
        assert listener is not None
        killed, made = listener.backend_pid, listener.connections
        async with a.gateway.db.begin() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed})
        with anyio.fail_after(10):
            await listener.wait_connected(made)
        assert b.gateway.notices.live and listener.backend_pid != killed
        # B still hears of queued jobs: it claims one that A will not take.
        await a.gateway.dispatcher.stop()
        response = await a.client.post(
            "/run", json={"service": "llm-4090", "input": PROMPT}, headers=auth(key)
        )
        queued = await a.gateway.get(response.json()["job_id"])
        with anyio.fail_after(10):
            done = await b.gateway.wait(queued, timeout_s=LONG_POLL_S, poll_s=LONG_POLL_S)
        assert done.status == JobStatus.COMPLETED


async def test_a_replica_that_was_not_listening_claims_what_was_queued_meanwhile(
    postgres_url: str, tmp_path: Path, upstream: Upstream
) -> None:
    async with two_replicas(postgres_url, tmp_path, upstream, async_llm=True) as (a, b, key):
        listener = b.gateway.notices.listener
        assert listener is not None
        await a.gateway.dispatcher.stop()
        await listener.stop()
        response = await a.client.post(
            "/run", json={"service": "llm-4090", "input": PROMPT}, headers=auth(key)
        )
        queued = await a.gateway.get(response.json()["job_id"])
        await listener.start()  # back: B has missed the notice, and catches up
        with anyio.fail_after(10):
            done = await a.gateway.wait(queued, timeout_s=LONG_POLL_S, poll_s=LONG_POLL_S)
        assert done.status == JobStatus.COMPLETED


def ends_heard_by(replica: Replica) -> list[str]:
    """The ids of the job ends that ``replica`` hears of from here on (its own listener)."""
    listener = replica.gateway.notices.listener
    assert listener is not None
    heard: list[str] = []
    on_status = listener.on_status

    def hear(job_id: str, status: JobStatus) -> None:
        heard.append(job_id)
        on_status(job_id, status)

    listener.on_status = hear
    return heard


async def test_a_sync_job_answered_inline_is_announced_to_no_other_replica(
    postgres_url: str, tmp_path: Path, upstream: Upstream
) -> None:
    """Its id is first shown in the answer (of ``/run``, the OpenAI door or an MCP tool call),
    so nobody elsewhere can be waiting for its end, and its end costs no notice. A job that an
    Idempotency-Key can return is announced."""
    async with two_replicas(postgres_url, tmp_path, upstream) as (a, b, key):
        heard = ends_heard_by(b)
        run = {"service": "llm-4090", "input": PROMPT}
        inline = await a.client.post("/run", json=run, headers=auth(key))
        chat = await a.client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Hello"}]},
            headers=auth(key),
        )
        async with Client(build_server(a.gateway, local_api_key=key)) as mcp:
            called = await mcp.call_tool("llm-4090", dict(PROMPT))
        keyed = await a.client.post(
            "/run", json=run, headers={**auth(key), "Idempotency-Key": "k1"}
        )
        for response in (inline, chat, keyed):
            assert response.status_code == 200, response.text
        assert inline.json()["status"] == keyed.json()["status"] == "completed"
        assert not called.is_error and called.structured_content is not None
        assert called.structured_content["status"] == "completed"
        with anyio.fail_after(10):
            while not heard:
                await asyncio.sleep(0.01)
        # Notices come in the order of their commits: the first three jobs' would have come first.
        assert heard == [keyed.json()["job_id"]]
        assert chat.headers["x-gpubridge-job-id"] not in heard


async def test_a_job_whose_caller_stopped_waiting_is_announced(
    postgres_url: str, tmp_path: Path, upstream: Upstream
) -> None:
    upstream.behaviour.delay_s = 0.3
    async with two_replicas(postgres_url, tmp_path, upstream) as (a, b, _key):
        account = await a.gateway.accounts.by_email("you@example.com")
        submitted = await a.gateway.submit(account, "llm-4090", dict(PROMPT))
        assert submitted.unseen
        job = await a.gateway.wait_to_answer(submitted.job, 0.01, unseen=True)
        assert job.status == JobStatus.RUNNING  # its caller now shows its id (a 202)
        with anyio.fail_after(10):
            done = await b.gateway.wait(job, timeout_s=LONG_POLL_S, poll_s=LONG_POLL_S)
        assert done.status == JobStatus.COMPLETED
        keyed = await a.gateway.submit(account, "llm-4090", dict(PROMPT), idempotency_key="k2")
        again = await a.gateway.submit(account, "llm-4090", dict(PROMPT), idempotency_key="k2")
        assert keyed.created and not keyed.unseen
        assert not again.created and not again.unseen
