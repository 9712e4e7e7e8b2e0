"""The composition root: builds settings, database, catalog, engines and the gateway once,
and mounts the front doors."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from starlette.applications import Starlette
from starlette.routing import Route

from gpubridge.catalog import Catalog
from gpubridge.catalog.availability import summary
from gpubridge.catalog.schemacheck import SchemaChecks
from gpubridge.db import Database
from gpubridge.db.checkpoint import WalCheckpoints
from gpubridge.db.engine import printable_url, sqlite_file
from gpubridge.db.migrate import prepare_schema
from gpubridge.engines.base import EngineContext
from gpubridge.engines.local import release_memory
from gpubridge.engines.registry import EngineRegistry
from gpubridge.engines.residency import ModelCache
from gpubridge.engines.router import Router
from gpubridge.engines.workers.placement import default_workers, named
from gpubridge.engines.workers.pool import WorkerPool
from gpubridge.gateway import Gateway
from gpubridge.http_api import build_routes
from gpubridge.http_api.bodylimit import body_limit_middleware
from gpubridge.http_api.dashboard import session_middleware
from gpubridge.http_api.errors import EXCEPTION_HANDLERS
from gpubridge.http_api.ratelimit import (
    close_limits_storage,
    limits_storage,
    rate_limit_middleware,
)
from gpubridge.jobs.webhooks import WebhookSender
from gpubridge.mcp_server.lazy import McpEndpoint
from gpubridge.money import usd_to_micros
from gpubridge.payments.accounts import Accounts
from gpubridge.payments.mailer import mailer_from_settings
from gpubridge.payments.recovery import Recovery
from gpubridge.settings import Settings

log = logging.getLogger(__name__)

SCHEMA_CHECKS_FILE = "catalog-schemas.checked"
"""In the data directory: digests of the catalog input schemas proven valid JSON Schemas, so
that a start with an unchanged catalog does not prove them again."""


@dataclass
class Components:
    """Everything a running gateway is made of, built once per process."""

    settings: Settings
    db: Database
    catalog: Catalog
    registry: EngineRegistry
    gateway: Gateway
    webhooks: WebhookSender
    limits_storage: Storage
    recovery: Recovery
    workers: WorkerPool | None = None
    checkpoints: WalCheckpoints | None = None
    announcing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the worker processes (in the background), the gateway's dispatcher and, on a
        SQLite file, the write-ahead log's checkpoints, and say what this server serves."""
        if self.workers is not None:
            await self.workers.start()
        await self.gateway.start()
        path = sqlite_file(self.db.url)
        if path is not None:
            self.checkpoints = WalCheckpoints(path)
            self.checkpoints.start()
        for line in self.banner():
            log.info("%s", line)
        # Which services can run needs a scan of the model cache: told once it is read,
        # without holding up the first request.
        self.announcing = asyncio.create_task(self._announce_availability())

    async def _announce_availability(self) -> None:
        try:
            reports = await self.gateway.availability.reports()
        except Exception:
            log.warning("could not tell which services can run here", exc_info=True)
            return
        for line in summary(self.catalog, reports):
            log.info("%s", line)

    def banner(self) -> list[str]:
        """Where the data lives, where models run, and which services have a backend here
        (which of them can run now follows once the model cache is read)."""
        settings = self.settings
        lines = [f"data in {settings.data_dir.resolve()}, database {printable_url(self.db.url)}"]
        if self.workers is None:
            lines.append("models run in this process (worker mode inline) or remotely only")
        else:
            local = [
                f"{w.name} on {w.spec.device} for {','.join(w.spec.services)}"
                for w in self.workers.workers
            ]
            lines.append("workers: " + ("; ".join(local) or "none here; remote workers may join"))
        served = [
            f"{s.key} ({s.default_model.id})" for s in self.catalog.services.values() if s.backends
        ]
        lines.append(f"{len(served)} services configured: " + ", ".join(served))
        return lines

    async def close(self) -> None:
        if self.announcing is not None:
            self.announcing.cancel()
        if self.checkpoints is not None:
            await self.checkpoints.stop()
        await self.recovery.aclose()
        close_limits_storage(self.limits_storage)
        await self.gateway.stop()
        if self.workers is not None:
            await self.workers.close()
        await self.webhooks.aclose()
        await self.registry.close()
        await self.db.dispose()


def build_components(settings: Settings) -> Components:
    """Wire the parts; a broken catalog raises ConfigurationError here, before serving."""
    checks = SchemaChecks(settings.data_dir / SCHEMA_CHECKS_FILE)
    catalog = Catalog.load(
        settings.catalog,
        starter=settings.starter,
        time_limit_s=settings.job_timeout_s,
        schema_checks=checks,
    )
    checks.save()
    db = Database(settings.resolved_database_url(), pool_size=settings.database_pool_size)
    secrets = {name: key.get_secret_value() for name, key in settings.remote_api_keys.items()}
    models = ModelCache(settings.model_memory_budget_bytes(), after_evict=release_memory)
    registry = EngineRegistry(secrets, EngineContext(models=models))
    workers = _worker_pool(settings, catalog, registry)
    registry.workers = workers
    webhooks = WebhookSender.from_settings(settings)
    accounts = Accounts(
        db,
        default_daily_limit_micros=usd_to_micros(settings.default_daily_limit_usd),
        cache_s=settings.api_key_cache_s,
    )
    gateway = Gateway(settings, db, catalog, accounts, Router(registry), webhooks)
    storage = limits_storage(settings.redis_url)
    recovery = Recovery(
        db,
        accounts,
        mailer_from_settings(settings),
        FixedWindowRateLimiter(storage),
        token_ttl_s=settings.recovery_token_ttl_s,
        per_email_per_hour=settings.recovery_per_email_per_hour,
        public_url=settings.public_url,
    )
    return Components(
        settings, db, catalog, registry, gateway, webhooks, storage, recovery, workers
    )


def _worker_pool(
    settings: Settings, catalog: Catalog, registry: EngineRegistry
) -> WorkerPool | None:
    """The local worker processes, when the catalog has a backend that loads a model and the
    operator did not ask for inline engines; none for a gateway of remote backends only."""
    if settings.worker_mode == "inline":
        return None
    types = {b.type for service in catalog.services.values() for b in service.backends}
    if not any(registry.is_local_runtime(t) for t in types):
        return None
    local = settings.worker_mode == "process"
    specs = (settings.workers or default_workers(None)) if local else []
    return WorkerPool(
        named(specs),
        default_budget_bytes=settings.model_memory_budget_bytes(),
        cancel_grace_s=settings.worker_cancel_grace_s,
        start_timeout_s=settings.worker_start_timeout_s,
    )


async def prepare_database(components: Components) -> None:
    """Bring the database to the newest schema (unless ``auto_migrate`` is off)."""
    if components.settings.auto_migrate:
        outcome = await prepare_schema(components.db)
        if outcome != "current":
            log.info("database schema %s", outcome)


GC_YOUNG_THRESHOLD = 10_000
"""Allocations between two collections of the youngest generation (Python's default: 700).
A request briefly holds a few thousand objects, nearly all freed by reference counting, so at
700 the collector ran every few requests only to walk the ones in flight: 480 collections and
240 ms in an 8 s load at 16 concurrent requests, against 5 and 16 ms at 10,000."""


def create_app(settings: Settings | None = None, *, freeze: bool = False) -> Starlette:
    """The HTTP application with its lifespan (database, dispatcher, engines).

    ``freeze``: once started, move every object made so far out of the garbage collector's
    sight (``gc.freeze``), so that its full collections no longer walk the start-up's hundreds
    of thousands of objects (pauses of 50-95 ms), and turn the collector on (``gpubridge``
    keeps it off while it loads) with a young generation of ``GC_YOUNG_THRESHOLD`` objects.
    For a server process; a process that builds many apps (tests) would keep each one's
    garbage.
    """
    settings = settings or Settings()
    components = build_components(settings)
    mcp = McpEndpoint(components.gateway)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await prepare_database(components)
        await components.start()
        if freeze:
            gc.freeze()
            gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
            gc.enable()  # the command line kept it off while the program loaded
        try:
            yield
        finally:
            await mcp.aclose()
            await components.close()

    app = Starlette(
        routes=[*build_routes(), Route("/mcp", endpoint=mcp)],
        exception_handlers=dict(EXCEPTION_HANDLERS),
        middleware=[
            *rate_limit_middleware(settings, components.limits_storage),
            body_limit_middleware(settings),
            session_middleware(settings),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = components.gateway
    app.state.components = components
    app.state.mcp = mcp
    app.state.recovery = components.recovery
    return app


async def serve_mcp_stdio(settings: Settings) -> None:
    """The MCP server on stdin/stdout over a local gateway, billing ``settings.api_key``."""
    components = build_components(settings)
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    from gpubridge.mcp_server.server import build_server
    from gpubridge.mcp_server.stdio import serve_stdio

    try:
        await prepare_database(components)
        await components.start()
        await serve_stdio(build_server(components.gateway, local_api_key=api_key))
    finally:
        await components.close()
