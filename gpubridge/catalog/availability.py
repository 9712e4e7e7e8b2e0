"""Whether each service and model of the catalog can run now, and why not.

A model can run when one of its service's backends can: a remote backend (``openai``) or a
factory registered in place of a built-in runtime always counts (its failures are the router's
to fail over); a built-in local runtime needs its Python packages installed and the model's
weights on this machine, or the hub in reach to download them (see ``catalog.weights``). Where
models run on other machines (remote workers), this machine cannot tell, and does not refuse.

What the machine holds is read once per ``ttl_s`` in a worker thread, so that neither admission
nor ``GET /catalog`` scans the disk or imports a runtime on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gpubridge.catalog.catalog import Catalog
from gpubridge.catalog.models import ModelSpec, Service
from gpubridge.catalog.weights import HubCache, hub_offline, locate, scan_hub_cache
from gpubridge.engines.base import BackendConfig
from gpubridge.engines.registry import EngineRegistry
from gpubridge.engines.runtimes import RUNTIMES, is_installed, weights_for
from gpubridge.errors import ServiceUnavailable

NO_BACKEND = "service_unavailable"
RUNTIME_NOT_INSTALLED = "runtime_not_installed"
MODEL_NOT_DOWNLOADED = "model_not_downloaded"

DEFAULT_TTL_S = 30.0
"""How long one reading of the cache and the installed packages is trusted."""


@dataclass(frozen=True)
class Verdict:
    """Available (no ``code``), or the machine-readable ``code`` and the human ``reason``."""

    code: str | None = None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.code is None


AVAILABLE = Verdict()


@dataclass(frozen=True)
class ServiceReport:
    """A service's verdict (available when one of its models is) and each model's."""

    verdict: Verdict
    models: dict[str, Verdict]


@dataclass(frozen=True)
class MachineState:
    """One reading of what this machine holds."""

    cache: HubCache
    offline: bool
    modules: dict[str, bool]
    read_at: float


def read_machine(
    cache_dir: Path | None = None, clock: Callable[[], float] = time.monotonic
) -> MachineState:
    """Scan the Hugging Face cache and look up every runtime's packages (blocking: run it in
    a thread)."""
    modules = sorted({m for runtime in RUNTIMES.values() for m in runtime.modules})
    return MachineState(
        scan_hub_cache(cache_dir),
        hub_offline(),
        {m: is_installed(m) for m in modules},
        clock(),
    )


class Availability:
    """The verdicts on a catalog's services and models on this machine, kept fresh."""

    def __init__(
        self,
        catalog: Catalog,
        registry: EngineRegistry,
        *,
        cache_dir: Path | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.registry = registry
        self.cache_dir = cache_dir
        self.ttl_s = ttl_s
        self._clock = clock
        self._state: MachineState | None = None
        self._lock = asyncio.Lock()

    async def state(self) -> MachineState:
        """What the machine holds, read again in a thread when older than ``ttl_s``; callers
        that arrive during a reading share it."""
        state = self._state
        if state is not None and self._clock() - state.read_at < self.ttl_s:
            return state  # fresh: no need to queue behind the lock
        async with self._lock:
            state = self._state
            if state is None or self._clock() - state.read_at >= self.ttl_s:
                state = await asyncio.to_thread(read_machine, self.cache_dir, self._clock)
                self._state = state
            return state

    def forget(self) -> None:
        """Read the machine again on the next question (after a download or a removal)."""
        self._state = None

    async def report(self, service: Service) -> ServiceReport:
        return self.evaluate(service, await self.state())

    async def reports(self) -> dict[str, ServiceReport]:
        state = await self.state()
        return {key: self.evaluate(s, state) for key, s in self.catalog.services.items()}

    async def require(self, service: Service, model: ModelSpec) -> None:
        """Refuse a job of ``model`` that cannot run now (503, before any charge)."""
        verdict = self.verdict(service, model, await self.state())
        if not verdict.available:
            raise ServiceUnavailable(
                verdict.reason or "unavailable", code=verdict.code, model=model.id
            )

    # -- verdicts -------------------------------------------------------------------------
    def evaluate(self, service: Service, state: MachineState) -> ServiceReport:
        if not service.backends:
            none = _no_backend(service)
            return ServiceReport(none, {m.id: none for m in service.models})
        here = self._runs_here(service.key)
        models = {m.id: self._model(service, m, state, here) for m in service.models}
        if any(v.available for v in models.values()):
            return ServiceReport(AVAILABLE, models)
        return ServiceReport(models[service.default_model.id], models)

    def verdict(self, service: Service, model: ModelSpec, state: MachineState) -> Verdict:
        """The verdict on one model of ``service`` (what ``evaluate`` says of it)."""
        if not service.backends:
            return _no_backend(service)
        return self._model(service, model, state, self._runs_here(service.key))

    def _runs_here(self, service_key: str) -> bool:
        """Whether this machine runs the service's local runtimes: in this process, or in
        local worker processes and no worker that joined from another machine."""
        pool = self.registry.workers
        if pool is None:
            return True
        serving = pool.serving(service_key)
        return bool(serving) and not any(w.remote for w in serving)

    def _model(
        self, service: Service, model: ModelSpec, state: MachineState, here: bool
    ) -> Verdict:
        failed = []
        for backend in service.backends:
            verdict = self._backend(backend, service, model, state, here)
            if verdict.available:
                return verdict
            failed.append(verdict)
        for verdict in failed:
            if verdict.code == MODEL_NOT_DOWNLOADED:
                return verdict
        reasons = list(dict.fromkeys(v.reason for v in failed if v.reason))
        return Verdict(RUNTIME_NOT_INSTALLED, "; ".join(reasons))

    def _backend(
        self,
        backend: BackendConfig,
        service: Service,
        model: ModelSpec,
        state: MachineState,
        here: bool,
    ) -> Verdict:
        if not self.registry.is_known(backend.type):
            return Verdict(
                RUNTIME_NOT_INSTALLED,
                f"backend {backend.name} of {service.key} has the type {backend.type!r}, "
                "which no runtime here provides",
            )
        runtime = RUNTIMES.get(backend.type)
        if runtime is None or not self.registry.is_builtin(backend.type) or not here:
            return AVAILABLE
        missing = [m for m in runtime.modules if not state.modules.get(m, False)]
        if missing:
            return Verdict(
                RUNTIME_NOT_INSTALLED,
                f"the {backend.type} runtime of {service.key} is not installed here (no "
                f"{', '.join(missing)}): install {runtime.install}",
            )
        for weights in weights_for(backend, model.ref()):
            if weights.optional:
                continue
            found = locate(weights, state.cache)
            if found.present or (found.kind == "hub" and not state.offline):
                continue
            if found.kind == "hub":
                reason = (
                    f"model {model.id} of {service.key} is not downloaded ({found.detail}) and "
                    "the hub is offline (HF_HUB_OFFLINE=1): download it with "
                    f"`gpubridge models pull {model.id}`"
                )
            else:
                reason = f"model {model.id} of {service.key} is not on this machine: {found.detail}"
            return Verdict(MODEL_NOT_DOWNLOADED, reason)
        return AVAILABLE


def summary(catalog: Catalog, reports: Mapping[str, ServiceReport]) -> list[str]:
    """What a person starting the server reads: the services ready now with their default
    models, then those that cannot run here, grouped by why, with what to do."""
    ready: list[str] = []
    blocked: dict[str, list[str]] = {}
    for key, service in catalog.services.items():
        report = reports.get(key)
        if report is None:
            continue
        if report.verdict.available:
            ready.append(f"{key} ({service.default_model.id})")
        else:
            blocked.setdefault(report.verdict.code or "unavailable", []).append(key)
    lines = [f"{len(ready)} services ready now: " + (", ".join(ready) or "none")]
    hints = {
        MODEL_NOT_DOWNLOADED: "weights not downloaded (gpubridge models pull MODEL)",
        RUNTIME_NOT_INSTALLED: "runtime not installed here (see docs/gpu.md)",
        NO_BACKEND: "no backend configured",
    }
    for code, keys in blocked.items():
        why = hints.get(code, code)
        lines.append(f"{len(keys)} services not available, {why}: " + ", ".join(keys))
    return lines


def _no_backend(service: Service) -> Verdict:
    return Verdict(NO_BACKEND, f"{service.key} has no backend configured on this server")
