"""The gateway's end of one worker connection: the jobs in flight on it and what it reported."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gpubridge.engines.workers import protocol
from gpubridge.engines.workers.channels import Channel
from gpubridge.engines.workers.protocol import Message
from gpubridge.settings import WorkerSpec

log = logging.getLogger(__name__)


class WorkerLost(Exception):
    """The worker ended (or its connection broke) while the job was on it."""


class WorkerLink:
    """A worker the pool can send jobs to: a local process or a remote machine."""

    remote = False

    def __init__(self, spec: WorkerSpec, memory_budget_bytes: int | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.memory_budget_bytes = memory_budget_bytes
        self.ready = asyncio.Event()
        self.pending: dict[str, asyncio.Queue[Message | None]] = {}
        self.models: set[tuple[str, str]] = set()
        self.status: dict[str, Any] = {}
        self.starts = 0
        self.last_exit: int | None = None
        self.last_restart_s: float | None = None
        self._channel: Channel | None = None
        self._status_waiters: list[asyncio.Future[dict[str, Any]]] = []
        self._load_waiters: dict[tuple[str, str], list[asyncio.Future[None]]] = {}

    @property
    def pid(self) -> int | None:
        pid = self.status.get("pid")
        return pid if isinstance(pid, int) else None

    @property
    def running(self) -> int:
        return len(self.pending)

    def has_model(self, owner: str, source: str) -> bool:
        """Whether the backend ``owner`` has the model at ``source`` resident here (with any
        load options, which residency keys append after ``#``)."""
        return any(
            o == owner and (s == source or s.startswith(source + "#")) for o, s in self.models
        )

    def kill(self) -> None:
        """End the worker's work at once (a job that would not stop)."""
        raise NotImplementedError

    # -- the connection -------------------------------------------------------------------------
    async def serve_channel(self, channel: Channel, hello: Message) -> None:
        """Relay the worker's frames to the jobs waiting on them until the connection ends;
        then every job still on it is lost."""
        self._channel = channel
        self.note(hello)
        self.ready.set()
        try:
            while (message := await channel.receive()) is not None:
                self.note(message)
                if message.op == "status":
                    for waiter in self._status_waiters:
                        if not waiter.done():
                            waiter.set_result(self.status)
                    self._status_waiters.clear()
                elif message.op == "loaded":
                    self._loaded(message)
                job = message.job
                if job is not None and job in self.pending:
                    self.pending[job].put_nowait(message)
        except (protocol.ProtocolError, ConnectionError) as exc:
            log.error("worker connection broke: %s", exc, extra={"worker": self.name})
        finally:
            self.ready.clear()
            self._channel = None
            await channel.close()

    def lose_all(self) -> None:
        """Tell every job in flight here that its worker is gone."""
        self.models.clear()
        lost, self.pending = self.pending, {}
        for queue in lost.values():
            queue.put_nowait(None)
        waiters: list[asyncio.Future[Any]] = list(self._status_waiters)
        waiters += [w for ws in self._load_waiters.values() for w in ws]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(WorkerLost(self.name))
        self._status_waiters.clear()
        self._load_waiters.clear()

    def note(self, message: Message) -> None:
        if "models" in message.header:
            self.models = {(str(a), str(b)) for a, b in message.header["models"]}
        if message.op in ("hello", "status"):
            self.status = {k: v for k, v in message.header.items() if k != "op"}

    # -- messages -------------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        if self._channel is None:
            raise WorkerLost(self.name)
        try:
            await self._channel.send(message)
        except ConnectionError as exc:
            raise WorkerLost(self.name) from exc

    def open_job(self, job_id: str) -> asyncio.Queue[Message | None]:
        queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self.pending[job_id] = queue
        return queue

    def close_job(self, job_id: str, queue: asyncio.Queue[Message | None]) -> None:
        if self.pending.get(job_id) is queue:
            del self.pending[job_id]

    async def load(self, message: Message, timeout_s: float) -> None:
        """Send a ``load`` frame and wait until the worker has the model (or says why not)."""
        key = (str(message.header["backend"]["name"]), str(message.header["model"]["source"]))
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._load_waiters.setdefault(key, []).append(waiter)
        await self.send(message)
        async with asyncio.timeout(timeout_s):
            await waiter

    def _loaded(self, message: Message) -> None:
        key = (str(message.header.get("backend")), str(message.header.get("source")))
        error = message.header.get("error")
        for waiter in self._load_waiters.pop(key, []):
            if waiter.done():
                continue
            if error:
                waiter.set_exception(protocol.decode_error(Message({"error": error})))
            else:
                waiter.set_result(None)

    async def refresh_status(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Ask the worker for its status (models, memory, running jobs)."""
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._status_waiters.append(waiter)
        await self.send(Message({"op": "status"}))
        async with asyncio.timeout(timeout_s):
            return await waiter
