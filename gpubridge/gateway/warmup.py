"""Loading the models that ship inside installed packages (the starter profile's) as the server
starts, so that the first call answers inline; and whether they are warm yet, for ``/readyz``.

Such weights are always on this machine and small, so loading them costs little and nothing is
downloaded. Models from the hub still load on their first job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from gpubridge.catalog import Catalog
from gpubridge.engines.base import BackendConfig
from gpubridge.engines.local import PACKAGE_PREFIX
from gpubridge.engines.registry import EngineRegistry
from gpubridge.engines.workers.link import WorkerLost
from gpubridge.errors import GpubridgeError

log = logging.getLogger(__name__)

State = Literal["loading", "ready", "failed"]
ATTEMPTS = 3
"""Loads tried per model when its worker dies meanwhile."""


@dataclass
class Target:
    service: str
    model: str
    backend: BackendConfig
    state: State = "loading"
    seconds: float | None = None
    error: str | None = None


class Warmup:
    """The packaged default models of the catalog, loaded one after another in the background."""

    def __init__(self, catalog: Catalog, registry: EngineRegistry) -> None:
        self.registry = registry
        self.catalog = catalog
        self.targets = [
            Target(service.key, service.default_model.id, backend)
            for service in catalog.services.values()
            if service.default_model.source.startswith(PACKAGE_PREFIX)
            for backend in service.backends[:1]
            if registry.is_local_runtime(backend.type)
        ]
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.targets and self._task is None:
            self._task = asyncio.create_task(self._run(), name="warm-up")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        for target in self.targets:
            started = time.monotonic()
            model = self.catalog.service(target.service).default_model
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    await self.registry.get(target.backend).load(model.ref())
                    break
                except WorkerLost:
                    if attempt < ATTEMPTS:
                        continue  # its worker restarts: load it there
                    target.state, target.error = "failed", "its worker kept stopping"
                except (GpubridgeError, TimeoutError, OSError) as exc:
                    target.state, target.error = "failed", str(exc)
                    break
            if target.state == "failed":
                log.warning("could not warm %s: %s", target.model, target.error)
                continue
            target.state, target.seconds = "ready", round(time.monotonic() - started, 2)
            log.info(
                "%s is warm: %s loaded in %.1f s", target.service, target.model, target.seconds
            )

    @property
    def ready(self) -> bool:
        return all(t.state == "ready" for t in self.targets)

    def view(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "models": {
                t.service: {
                    "model": t.model,
                    "state": t.state,
                    **({"load_seconds": t.seconds} if t.seconds is not None else {}),
                    **({"error": t.error} if t.error else {}),
                }
                for t in self.targets
            },
        }
