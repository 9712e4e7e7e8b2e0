"""``gpubridge serve --processes N``: several gateway processes on one listening socket.

One process runs the paid path on one core. With N processes, a supervisor binds the socket,
brings the database to the newest schema once, and starts N gateway processes (uvicorn's
multiprocess supervisor: it restarts one that dies, and stops them all on Ctrl-C or SIGTERM);
the kernel hands each new connection to one of them.

Each process is a replica, as gateways on several machines are: it claims queued jobs with
``FOR UPDATE SKIP LOCKED``, renews its own lease, requeues or refunds the jobs of a replica
that vanished, and hears the others through ``LISTEN``/``NOTIFY``. That takes PostgreSQL, and
it takes backends that every process reaches alike: remote ones (an OpenAI-compatible server
such as ``vllm serve``), not models loaded on this machine, which each process would load again
into the same GPU memory, nor workers that join over ``/workers/connect``, which join one
process only.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from typing import TYPE_CHECKING

from gpubridge.catalog import Catalog
from gpubridge.engines.registry import EngineRegistry
from gpubridge.settings import Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

SHOWN_SERVICES = 5


def refusal(settings: Settings, catalog: Catalog, processes: int) -> str | None:
    """Why this gateway cannot serve with ``processes`` processes; None when it can."""
    if processes <= 1:
        return None
    if not settings.resolved_database_url().startswith("postgresql"):
        return (
            f"--processes {processes} needs PostgreSQL (GPUBRIDGE_DATABASE_URL="
            "postgresql+asyncpg://...). SQLite takes one writer at a time, and the processes "
            "would queue for its lock on every paid request (seconds of wait under load "
            "instead of the single process's short queue); nor can processes hear each other "
            "on SQLite, so a job cancelled through one would run on in another. Serve one "
            "process on SQLite."
        )
    registry = EngineRegistry()
    local = {
        key: sorted({b.type for b in service.backends if registry.is_local_runtime(b.type)})
        for key, service in catalog.services.items()
    }
    here = [f"{key} ({', '.join(types)})" for key, types in local.items() if types]
    if not here:
        return None
    shown = ", ".join(here[:SHOWN_SERVICES])
    more = f" and {len(here) - SHOWN_SERVICES} more" if len(here) > SHOWN_SERVICES else ""
    return (
        f"--processes {processes} serves remote backends only, and the catalog runs models on "
        f"this machine for {shown}{more}: each process would load them again into the same "
        "memory. Give those services remote backends (type openai: a server such as "
        "`vllm serve`) in GPUBRIDGE_CATALOG, or leave them without backends, or serve one "
        "process."
    )


def serve_processes(settings: Settings, host: str, port: int, processes: int) -> int:
    """Serve with ``processes`` gateway processes until Ctrl-C or SIGTERM; the exit status."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from gpubridge.cli import server_config

    gc.enable()  # off while the program loaded (see gpubridge.launch)
    # The processes read their settings from the environment, as this one did; the command
    # line's own choices go there too.
    os.environ["GPUBRIDGE_STARTER"] = "true" if settings.starter else "false"
    asyncio.run(_prepare_schema(settings))
    config = server_config(f"{__name__}:process_app", host, port, factory=True)
    config.workers = processes
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
    return STARTUP_FAILURE if failed else 0


def process_app() -> Starlette:
    """The app of one of the processes (uvicorn calls this in each)."""
    from gpubridge.app import create_app

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return create_app(Settings(), freeze=True)


async def _prepare_schema(settings: Settings) -> None:
    """The schema once, before any process starts (they then find it current)."""
    if not settings.auto_migrate:
        return
    from gpubridge.db import Database
    from gpubridge.db.migrate import prepare_schema

    db = Database(settings.resolved_database_url())
    try:
        outcome = await prepare_schema(db)
    finally:
        await db.dispose()
    if outcome != "current":
        logging.getLogger(__name__).info("database schema %s", outcome)
