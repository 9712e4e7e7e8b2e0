"""Picks a backend for each job, bounds each backend's concurrency, and fails over on error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from gpubridge.engines.base import BackendConfig, Emit, EngineEvent, EngineRequest, EngineResult
from gpubridge.engines.cancellation import cancel_scope
from gpubridge.engines.registry import EngineRegistry
from gpubridge.errors import BackendError, GpubridgeError, InvalidInput, ServiceUnavailable

log = logging.getLogger(__name__)


@dataclass
class Routed:
    """A job's result, the backend that served it, and the backends that failed before it."""

    result: EngineResult
    backend: str
    attempts: list[dict[str, str]] = field(default_factory=list)


def order_backends(backends: list[BackendConfig], priority: str | None) -> list[BackendConfig]:
    """``fast``: lowest expected latency first; ``cheap``: lowest cost first; else as given."""
    if priority == "fast":
        return sorted(backends, key=lambda b: b.expected_latency_s)
    if priority == "cheap":
        return sorted(backends, key=lambda b: b.cost_weight)
    return list(backends)


def _describe(exc: Exception) -> str:
    if isinstance(exc, GpubridgeError):
        return exc.message
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Tracking:
    """An ``Emit`` that remembers whether any token went out."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self.streamed = False

    async def __call__(self, event: EngineEvent) -> None:
        if event.kind == "token":
            self.streamed = True
        await self._emit(event)


class Router:
    """Runs a job on the first backend that succeeds, in priority order."""

    def __init__(self, registry: EngineRegistry) -> None:
        self.registry = registry
        self._slots: dict[str, asyncio.Semaphore] = {}

    def _slot(self, backend: BackendConfig) -> asyncio.Semaphore:
        slot = self._slots.get(backend.name)
        if slot is None:
            slot = self._slots[backend.name] = asyncio.Semaphore(backend.concurrency)
        return slot

    async def execute(
        self,
        backends: list[BackendConfig],
        request: EngineRequest,
        emit: Emit,
        priority: str | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> Routed:
        """Run ``request``; ``InvalidInput`` propagates at once, other failures fail over.
        ``on_start`` is called when a backend first takes the job (a slot was free)."""
        if not backends:
            raise ServiceUnavailable(f"service {request.service!r} has no backend configured")
        attempts: list[dict[str, str]] = []
        restart_after: str | None = None
        for backend in order_backends(backends, priority):
            if restart_after is not None:
                await emit(_restart_event(restart_after, backend.name))
                restart_after = None
            tracking = _Tracking(emit)
            try:
                engine = self.registry.get(backend)
                async with self._slot(backend):
                    if on_start is not None:
                        on_start()
                    with cancel_scope() as cancelled:
                        try:
                            result = await engine.run(request, tracking)
                        except asyncio.CancelledError:
                            cancelled.set()  # work in this process stops at its next step
                            raise
            except InvalidInput:
                raise
            except Exception as exc:
                message = _describe(exc)
                attempts.append({"backend": backend.name, "error": message})
                # A runtime missing on this machine (vLLM on a CPU host) is expected, not news.
                missing = isinstance(exc, ServiceUnavailable) and "backend_type" in exc.details
                log.log(
                    logging.DEBUG if missing else logging.WARNING,
                    "backend failed, trying the next",
                    extra={"job_id": request.job_id, "backend": backend.name, "error": message},
                )
                if tracking.streamed:
                    restart_after = backend.name
                continue
            return Routed(result=result, backend=backend.name, attempts=attempts)
        summary = "; ".join(f"{a['backend']}: {a['error']}" for a in attempts)
        raise BackendError(f"all backends failed ({summary})", attempts=attempts)


def _restart_event(failed: str, next_backend: str) -> EngineEvent:
    return EngineEvent(
        "log",
        {
            "message": (
                f"backend {failed} failed after streaming part of the output; "
                f"the output restarts from the beginning on backend {next_backend}"
            ),
            "restart": True,
            "failed_backend": failed,
            "backend": next_backend,
        },
    )
