"""Workers on other machines: admitted by token, served for as long as they stay connected."""

from __future__ import annotations

import itertools
import re
from typing import Any

from gpubridge.db import Database
from gpubridge.engines.workers.channels import Channel
from gpubridge.engines.workers.pool import WorkerPool
from gpubridge.errors import ServiceUnavailable, Unauthorized
from gpubridge.jobs import worker_tokens
from gpubridge.jobs.worker_tokens import WorkerGrant
from gpubridge.settings import WorkerSpec


class RemoteWorkers:
    """The door's side of ``/workers/connect``: check the token, then hand the connection to
    the worker pool under the token's name and services."""

    def __init__(self, db: Database, pool: WorkerPool | None) -> None:
        self.db = db
        self.pool = pool
        self._numbers = itertools.count(1)

    async def admit(self, token: str) -> WorkerGrant:
        if self.pool is None:
            raise ServiceUnavailable("this gateway runs its engines inline and takes no workers")
        async with self.db.connect() as conn:
            grant = await worker_tokens.verify(conn, token)
        if grant is None:
            raise Unauthorized("unknown or revoked worker token", code="invalid_worker_token")
        return grant

    async def serve(self, grant: WorkerGrant, channel: Channel, hello: dict[str, Any]) -> None:
        """Serve the admitted worker until it disconnects."""
        assert self.pool is not None  # admit() refused the connection otherwise
        device = str(hello.get("device", "cpu"))
        spec = WorkerSpec(
            name=f"{grant.name}-{next(self._numbers)}",
            device="cpu" if device == "cpu" else _cuda(device),
            services=grant.services,
        )
        await self.pool.attach(spec, channel, hello)


def _cuda(device: str) -> str:
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    return f"cuda:{match.group(1) or 0}" if match else "cuda:0"
