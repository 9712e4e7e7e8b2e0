"""The gateway's side of the worker processes: which worker runs a job, and what happens when
a job is cancelled or its worker dies.

``WorkerEngine`` stands in the router for every local backend: running a job sends it to a
worker that serves its service (one with the model loaded first), relays the worker's events
and returns its result. A cancelled job (cancel, timeout, shutdown) returns only once its work
has stopped: the worker stops it between two steps, or, past the grace period, the worker is
killed and restarted. So a backend slot is free only when the device is. A job whose worker
died before it produced any output is retried once; otherwise it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineEvent,
    EngineRequest,
    EngineResult,
    ModelRef,
)
from gpubridge.engines.workers import protocol
from gpubridge.engines.workers.channels import Channel
from gpubridge.engines.workers.link import WorkerLink, WorkerLost
from gpubridge.engines.workers.protocol import Message
from gpubridge.engines.workers.remote import RemoteWorker
from gpubridge.engines.workers.supervisor import WorkerProcess
from gpubridge.errors import BackendError, ServiceUnavailable
from gpubridge.settings import WorkerSpec

log = logging.getLogger(__name__)

TERMINAL_OPS = frozenset({"result", "error", "stopped"})
STATUS_EVERY_S = 5.0


class WorkerPool:
    """The local worker processes of one gateway, started and supervised together."""

    def __init__(
        self,
        specs: Sequence[WorkerSpec],
        *,
        default_budget_bytes: int | None,
        cancel_grace_s: float = 1.5,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.workers: list[WorkerLink] = [
            WorkerProcess(
                spec,
                memory_budget_bytes=(
                    spec.memory_mb * 1024 * 1024
                    if spec.memory_mb is not None
                    else default_budget_bytes
                ),
                start_timeout_s=start_timeout_s,
            )
            for spec in specs
        ]
        self.cancel_grace_s = cancel_grace_s
        self.start_timeout_s = start_timeout_s
        self.last_cancel_to_free_s: float | None = None
        self.retried_jobs = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._joined = asyncio.Event()

    async def attach(self, spec: WorkerSpec, channel: Channel, hello: dict[str, Any]) -> None:
        """Serve a worker that dialled in from another machine until it disconnects; its jobs
        then are lost (retried once elsewhere when they had produced nothing)."""
        worker = RemoteWorker(spec)
        self.workers.append(worker)
        self._joined.set()
        self._joined = asyncio.Event()
        log.info("remote worker joined", extra={"worker": spec.name, "services": spec.services})
        try:
            await worker.serve(channel, hello)
        finally:
            self.workers.remove(worker)
            log.info("remote worker left", extra={"worker": spec.name})

    def can_serve(self, service: str) -> bool:
        """Whether a worker for ``service`` is running or being (re)started here."""
        return any(not w.remote or w.ready.is_set() for w in self.serving(service))

    async def start(self) -> None:
        """Start every worker in the background (the gateway serves while they come up)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(w.supervise(), name=f"supervise-{w.name}")
                for w in self.workers
                if isinstance(w, WorkerProcess)
            ]
            self._tasks.append(asyncio.create_task(self._refresh(), name="worker-status"))

    async def _refresh(self, every_s: float = STATUS_EVERY_S) -> None:
        """Keep each worker's reported memory and models fresh for listings and metrics."""
        while True:
            await asyncio.sleep(every_s)
            for worker in list(self.workers):
                if worker.ready.is_set():
                    with contextlib.suppress(WorkerLost, TimeoutError):
                        await worker.refresh_status()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for worker in self.workers:
            if isinstance(worker, RemoteWorker):
                worker.kill()
        processes = [w for w in self.workers if isinstance(w, WorkerProcess)]
        await asyncio.gather(*(w.close() for w in processes), return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def serving(self, service: str) -> list[WorkerLink]:
        if service == "*":
            return list(self.workers)
        return [w for w in self.workers if w.spec.serves(service)]

    async def pick(
        self, service: str, warm: tuple[str, str], exclude: WorkerLink | None = None
    ) -> WorkerLink:
        """A ready worker for ``service``: one with the model loaded, else the least busy;
        waits for one to start (or restart) for at most the start timeout."""
        candidates = self.serving(service)
        if not candidates:
            raise ServiceUnavailable(f"no worker process serves {service!r} here")
        others = [w for w in candidates if w is not exclude]
        candidates = others or candidates
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            ready = [w for w in candidates if w.ready.is_set()]
            if ready:
                return min(ready, key=lambda w: (not w.has_model(*warm), w.running))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceUnavailable(f"no worker for {service!r} is running (starting up?)")
            waits = [asyncio.ensure_future(w.ready.wait()) for w in candidates]
            try:
                await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()

    async def run(self, backend: BackendConfig, request: EngineRequest, emit: Emit) -> EngineResult:
        """Run ``request`` on a worker; retried once on a worker death before any output."""
        warm = (backend.name, request.model.source)
        tried: WorkerLink | None = None
        for attempt in (1, 2):
            worker = await self.pick(request.service, warm, exclude=tried)
            relay = _Relay(emit)
            try:
                return await self._run_on(worker, backend, request, relay)
            except WorkerLost:
                if relay.produced or attempt == 2:
                    raise BackendError(
                        f"the worker running this job stopped (exit code {worker.last_exit})",
                        code="worker_lost",
                    ) from None
                self.retried_jobs += 1
                log.warning(
                    "worker died before the job produced output; retrying it once",
                    extra={"job_id": request.job_id, "worker": worker.name},
                )
                tried = worker
        raise AssertionError("unreachable")

    async def _run_on(
        self, worker: WorkerLink, backend: BackendConfig, request: EngineRequest, relay: _Relay
    ) -> EngineResult:
        queue = worker.open_job(request.job_id)
        try:
            await worker.send(protocol.run_message(backend, request))
            while True:
                message = await queue.get()
                if message is None:
                    raise WorkerLost(worker.name)
                if message.op == "event":
                    kind = message.header["kind"]
                    await relay(EngineEvent(kind, message.header.get("data") or {}))
                elif message.op == "result":
                    return protocol.decode_result(message)
                elif message.op == "error":
                    raise protocol.decode_error(message)
                elif message.op == "stopped":
                    raise BackendError("the worker stopped this job")
        except asyncio.CancelledError:
            stopping = asyncio.ensure_future(self._stop(worker, request.job_id, queue))
            # Cancelled again while stopping (a cancel and a timeout, a notice and a watch):
            # keep waiting, since this job's slot may be freed only once its work stopped.
            while not stopping.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(stopping)
            raise
        finally:
            worker.close_job(request.job_id, queue)

    async def _stop(
        self, worker: WorkerLink, job_id: str, queue: asyncio.Queue[Message | None]
    ) -> None:
        """Ask the worker to stop ``job_id`` and wait until its work has ended; past the grace
        period, kill the worker and wait for it to be gone."""
        started = time.monotonic()
        try:
            await worker.send(Message({"op": "cancel", "job": job_id}))
            async with asyncio.timeout(self.cancel_grace_s):
                while True:
                    message = await queue.get()
                    if message is None or message.op in TERMINAL_OPS:
                        break
        except (TimeoutError, WorkerLost):
            worker.kill()
            while (message := await queue.get()) is not None:
                pass  # drain until the supervisor reports the process gone
        self.last_cancel_to_free_s = time.monotonic() - started
        log.info(
            "cancelled job stopped after %.2f s",
            self.last_cancel_to_free_s,
            extra={"job_id": job_id, "worker": worker.name},
        )

    async def load(
        self, backend: BackendConfig, model: ModelRef, service: str = "*", timeout_s: float = 600
    ) -> None:
        """Load ``model`` on a worker serving ``service`` (any worker for ``*``) and wait until
        it is resident; the worker's error when it cannot be loaded."""
        worker = await self.pick(service, (backend.name, model.source))
        header = {"op": "load", "backend": backend.model_dump(mode="json"), "model": asdict(model)}
        await worker.load(Message(header), timeout_s)

    def snapshot(self) -> list[dict[str, Any]]:
        """Each worker's device, state, models and jobs, for ``/metrics`` and the lease."""
        return [
            {
                "name": w.name,
                "device": w.spec.device,
                "services": w.spec.services,
                "ready": w.ready.is_set(),
                "remote": w.remote,
                "pid": w.pid,
                "starts": w.starts,
                "last_exit": w.last_exit,
                "last_restart_s": w.last_restart_s,
                "models": sorted(f"{owner}:{source}" for owner, source in w.models),
                "running_jobs": sorted(w.pending),
                "budget_bytes": w.memory_budget_bytes,
                "rss_bytes": w.status.get("rss_bytes"),
                "resident_bytes": w.status.get("resident_bytes"),
                "device_memory": w.status.get("device_memory"),
            }
            for w in self.workers
        ]


class _Relay:
    """Forwards a job's events, remembering whether any output (a token) went out."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self.produced = False

    async def __call__(self, event: EngineEvent) -> None:
        if event.kind == "token":
            self.produced = True
        await self._emit(event)


class WorkerEngine:
    """The ``Engine`` for a local backend whose runtime runs in worker processes."""

    def __init__(self, backend: BackendConfig, pool: WorkerPool) -> None:
        self.name = backend.name
        self.backend = backend
        self.pool = pool

    async def load(self, model: ModelRef) -> None:
        await self.pool.load(self.backend, model)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        return await self.pool.run(self.backend, request, emit)

    async def health(self) -> bool:
        return any(w.ready.is_set() for w in self.pool.workers)

    async def unload(self) -> None:
        """Models live in the workers; they are freed when the pool closes."""
