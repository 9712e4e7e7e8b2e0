"""The worker side: a process that owns a device and runs jobs the gateway sends it.

It builds engines with the same registry the gateway used to run in-process, keeps models
resident under its memory budget, and answers each ``run`` with events and one ``result``,
``error`` or ``stopped``. It exits when the gateway's end of the socket closes, so a gateway
that dies takes its workers' work with it instead of leaving it orphaned on the GPU, and on
SIGTERM it stops its jobs and closes the connection: the gateway then retries elsewhere the
jobs that had produced nothing, and fails (refunds) the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gpubridge.engines.base import BackendConfig, EngineContext, EngineEvent, ModelRef
from gpubridge.engines.cancellation import cancel_scope
from gpubridge.engines.local import release_memory
from gpubridge.engines.registry import EngineRegistry
from gpubridge.engines.residency import ModelCache
from gpubridge.engines.workers import protocol
from gpubridge.engines.workers.batching import TokenBatcher
from gpubridge.engines.workers.channels import Channel, StreamChannel
from gpubridge.engines.workers.groups import end_own_children_group
from gpubridge.engines.workers.protocol import Message
from gpubridge.engines.workers.remote_client import RemoteGateway
from gpubridge.engines.workers.signals import stop_on_sigterm

log = logging.getLogger(__name__)


@dataclass
class _Job:
    flag: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    service: str = ""
    task: asyncio.Task[None] | None = None


class WorkerServer:
    """Runs the jobs that arrive on one connection to the gateway."""

    def __init__(self, *, name: str, device: str, memory_budget_bytes: int | None) -> None:
        self.channel: Channel | None = None
        self.name = name
        self.device = device
        self.models = ModelCache(memory_budget_bytes, after_evict=release_memory)
        self.registry = EngineRegistry(context=EngineContext(models=self.models))
        self.jobs: dict[str, _Job] = {}
        self.stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def send(self, message: Message) -> None:
        if self.channel is None:
            return
        try:
            await self.channel.send(message)
        except ConnectionError:
            log.debug("the gateway went away while a message was sent")

    async def serve(self, channel: Channel, hello: dict[str, Any] | None = None) -> None:
        """Say hello (with ``hello``'s extra fields), then handle messages until the gateway
        closes the connection; the jobs still running then are stopped."""
        self.channel = channel
        await self.send(Message({"op": "hello", **self.status(), **(hello or {})}))
        try:
            while (message := await channel.receive()) is not None:
                try:
                    self.handle(message)
                except Exception:
                    # One bad message must not end the worker (and every job on it).
                    log.exception("could not handle a %r message", message.op)
        except (protocol.ProtocolError, ConnectionError) as exc:
            log.error("the connection to the gateway broke: %s", exc)
        finally:
            self.channel = None
            for job in self.jobs.values():
                job.flag.set()

    def shutdown(self, grace_s: float = 3.0) -> None:
        """Stop gracefully: take no new job, stop the running ones, and close the connection
        once they stopped (or after ``grace_s``). Their outcome is not sent: to the gateway they
        are lost with the worker, so it retries those that produced nothing on another one."""
        if self.stopping:
            return
        self.stopping = True
        for job in self.jobs.values():
            job.flag.set()
        self._spawn(self._close_when_stopped(grace_s))

    async def _close_when_stopped(self, grace_s: float) -> None:
        running = [job.task for job in self.jobs.values() if job.task is not None]
        if running:
            await asyncio.wait(running, timeout=grace_s)
        if self.jobs:
            log.warning("%d job(s) did not stop in %.1f s", len(self.jobs), grace_s)
        if self.channel is not None:
            await self.channel.close()

    def handle(self, message: Message) -> None:
        if message.op == "run" and self.stopping:
            log.info("not starting a job while stopping: %s", message.job)
        elif message.op == "run":
            backend, request = protocol.decode_run(message)
            job = self.jobs[request.job_id] = _Job(service=request.service)
            job.task = self._spawn(self._run(backend, request, job))
        elif message.op == "cancel" and message.job in self.jobs:
            self.jobs[message.job].flag.set()
        elif message.op == "load":
            backend = BackendConfig.model_validate(message.header["backend"])
            self._spawn(self._load(backend, ModelRef(**message.header["model"])))
        elif message.op == "status":
            self._spawn(self.send(Message({"op": "status", **self.status()})))
        else:
            log.warning("unknown message from the gateway: %r", message.op)

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, backend: BackendConfig, request: Any, job: _Job) -> None:
        job_id = request.job_id

        async def send(event: EngineEvent) -> None:
            if not job.flag.is_set():
                header = {"op": "event", "job": job_id, "kind": event.kind, "data": event.data}
                await self.send(Message(header))

        emit = TokenBatcher(send)
        outcome: Message
        with cancel_scope(job.flag):
            try:
                engine = self.registry.get(backend)
                result = await engine.run(request, emit)
                await emit.flush()
                outcome = protocol.result_message(job_id, result)
            except Exception as exc:
                await emit.flush()  # the tokens made before the failure, as before
                outcome = protocol.error_message(job_id, exc)
        del self.jobs[job_id]
        if job.flag.is_set():
            if self.stopping:
                return  # lost with this worker, as far as the gateway can tell
            outcome = Message({"op": "stopped", "job": job_id})
        outcome.header["models"] = self.loaded_models()
        await self.send(outcome)

    async def _load(self, backend: BackendConfig, model: ModelRef) -> None:
        header: dict[str, Any] = {"op": "loaded", "backend": backend.name, "source": model.source}
        try:
            await self.registry.get(backend).load(model)
        except Exception as exc:
            header["error"] = protocol.error_message("", exc).header["error"]
        header["models"] = self.loaded_models()
        await self.send(Message(header))

    def loaded_models(self) -> list[list[str]]:
        resident = self.models.keys()
        return [list(key) for key in resident]

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": os.getpid(),
            "device": self.device,
            "models": self.loaded_models(),
            "resident_bytes": self.models.resident_bytes,
            "budget_bytes": self.models.budget_bytes,
            "rss_bytes": _rss_bytes(),
            "device_memory": _device_memory(),
            "running": [
                {"job": job_id, "service": job.service, "seconds": time.monotonic() - job.started}
                for job_id, job in self.jobs.items()
            ],
        }


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _device_memory() -> dict[str, int] | None:
    """Allocated and peak CUDA memory, when torch is already loaded and sees a GPU. torch may
    be half imported (a job's thread is importing it right now): then there is nothing yet."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    try:
        if cuda is None or not cuda.is_available():
            return None
        return {
            "allocated_bytes": int(cuda.memory_allocated()),
            "peak_bytes": int(cuda.max_memory_allocated()),
            "total_bytes": int(cuda.get_device_properties(0).total_memory),
        }
    except Exception:
        return None


async def serve_on_fd(server: WorkerServer, fd: int) -> None:
    """Serve the gateway on the socket inherited as file descriptor ``fd``."""
    os.set_inheritable(fd, False)  # programs the runtimes start do not hold the gateway's socket
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**20)
    await server.serve(StreamChannel(reader, writer))


async def _serve(server: WorkerServer, fd: int | None, gateway: RemoteGateway | None) -> None:
    with stop_on_sigterm(server.shutdown):
        if gateway is not None:
            await gateway.serve_forever(server)
        elif fd is not None:
            await serve_on_fd(server, fd)


def run_worker(
    server: WorkerServer, fd: int | None = None, gateway: RemoteGateway | None = None
) -> None:
    """The ``gpubridge worker`` process: serve the gateway that started it (``fd``) until it
    goes, or a remote ``gateway`` for good, or until SIGTERM; then end the processes the
    runtimes started and exit at once (threads still running a model's step cannot be
    joined, and need not be)."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [{server.name}] %(name)s: %(message)s",
        force=True,
    )
    status = 0
    try:
        asyncio.run(_serve(server, fd, gateway))
    except KeyboardInterrupt:
        pass
    except BaseException:
        log.exception("the worker failed")
        status = 1
    finally:
        left = end_own_children_group()
        if left:
            log.info("ended %d process(es) the runtimes had started", left)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
