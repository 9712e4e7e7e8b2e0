"""A running gateway for MCP tests: LLM and embeddings on a loopback upstream, a media test
double, SQLite, and clients of every transport (in-memory, streamable HTTP, stdio)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import func, select
from starlette.applications import Starlette

from gpubridge.db.tables import jobs
from gpubridge.gateway import Gateway
from gpubridge.mcp_server import build_server
from tests.mcp_server.media_engine import (
    MEDIA_BACKEND_TYPE,
    MEDIA_SERVICE,
    MEDIA_SERVICE_ENTRY,
    create_media_engine,
)
from tests.support.gateway_app import (
    CatalogEdit,
    auth,
    openai_backend,
    register,
    running_app,
    settings_for,
    write_catalog,
)
from tests.support.openai_upstream import Upstream, serve_openai_upstream

LLM_CALL = {"prompt": "Say hello", "max_tokens": 16}
FUNDS_MICROS = 10_000_000


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """MCP tests run on SQLite; the gateway's own tests cover PostgreSQL."""
    return f"sqlite+aiosqlite:///{tmp_path / 'gpubridge.db'}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with serve_openai_upstream() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: Upstream) -> Iterator[None]:
    yield
    upstream.behaviour.reset()


def catalog_edit(base_url: str, *, media: bool = True) -> Callable[[dict[str, Any]], None]:
    """The packaged catalog with llm-4090 and embedding-l4 on the upstream, plus (as an
    operator would add one) the media test service."""

    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        services["llm-4090"]["backends"] = [openai_backend("upstream", base_url)]
        services["embedding-l4"]["backends"] = [openai_backend("upstream-embed", base_url)]
        if media:
            services[MEDIA_SERVICE] = dict(MEDIA_SERVICE_ENTRY)

    return edit


def async_llm(data: dict[str, Any]) -> None:
    """A catalog edit: llm-4090 as an async service (queued, answered with a job or a task)."""
    data["services"]["llm-4090"]["mode"] = "async"


@dataclass
class Running:
    """A started gateway app, its in-process HTTP client, and helpers."""

    app: Starlette
    http: httpx.AsyncClient

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    async def funded_key(self, email: str = "agent@example.com") -> str:
        key = await register(self.http, email)
        await self.gateway.grant(email, FUNDS_MICROS)
        return key

    async def balance_micros(self, key: str) -> int:
        response = await self.http.get("/account/balance", headers=auth(key))
        assert response.status_code == 200, response.text
        return round(response.json()["balance"] * 1_000_000)

    async def job_count(self, key: str) -> int:
        response = await self.http.get("/account/jobs", headers=auth(key))
        total: int = response.json()["total"]
        return total

    async def all_jobs(self) -> int:
        """Jobs of every account."""
        async with self.gateway.db.connect() as conn:
            count: int = (await conn.execute(select(func.count()).select_from(jobs))).scalar_one()
        return count

    def client(self, api_key: str | None = None) -> Client:
        """An in-memory client of a server billing ``api_key`` (as stdio does)."""
        return Client(build_server(self.gateway, local_api_key=api_key))


StartGateway = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def start_gateway(database: Any, database_url: str, tmp_path: Path, upstream: Upstream):
    """Start the app with settings overrides; ``media=False`` keeps the packaged catalog and
    ``edit`` changes the catalog further."""

    @asynccontextmanager
    async def start(
        *, media: bool = True, edit: CatalogEdit | None = None, **overrides: Any
    ) -> AsyncIterator[Running]:
        base = catalog_edit(upstream.base_url, media=media)

        def edits(data: dict[str, Any]) -> None:
            base(data)
            if edit is not None:
                edit(data)

        catalog = write_catalog(tmp_path / "catalog.yaml", edits)
        settings = settings_for(database_url, tmp_path, catalog, **overrides)
        async with running_app(settings) as (app, http):
            app.state.components.registry.register(MEDIA_BACKEND_TYPE, create_media_engine)
            yield Running(app, http)

    return start


@pytest.fixture
async def running(start_gateway: StartGateway) -> AsyncIterator[Running]:
    async with start_gateway() as started:
        yield started


@asynccontextmanager
async def serve_http(app: Starlette) -> AsyncIterator[str]:
    """Serve ``app`` (its lifespan already running) with uvicorn on a loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        with anyio.fail_after(15):
            await task
        sock.close()


@asynccontextmanager
async def http_client(url: str, api_key: str | None, **options: Any) -> AsyncIterator[Client]:
    """A streamable HTTP client of ``url``/mcp sending ``api_key`` as a bearer key."""
    headers = auth(api_key) if api_key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), **options) as client,
    ):
        yield client
