"""One supervised worker process: started, watched, restarted with backoff when it dies."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from gpubridge.engines.workers import protocol
from gpubridge.engines.workers.protocol import Message
from gpubridge.settings import WorkerSpec

log = logging.getLogger(__name__)

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0
"""A worker that lived this long has its backoff reset."""


class WorkerLost(Exception):
    """The worker process ended (or its connection broke) while the job was on it."""


class WorkerProcess:
    """A ``gpubridge worker`` child process and the jobs in flight on it."""

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        memory_budget_bytes: int | None,
        start_timeout_s: float,
        python: str = sys.executable,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.memory_budget_bytes = memory_budget_bytes
        self.start_timeout_s = start_timeout_s
        self.python = python
        self.process: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.pending: dict[str, asyncio.Queue[Message | None]] = {}
        self.models: set[tuple[str, str]] = set()
        self.status: dict[str, Any] = {}
        self.starts = 0
        self.last_exit: int | None = None
        self.last_restart_s: float | None = None
        self._died_at: float | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._status_waiters: list[asyncio.Future[dict[str, Any]]] = []
        self._closing = False

    def has_model(self, owner: str, source: str) -> bool:
        """Whether the backend ``owner`` has the model at ``source`` resident here (with any
        load options, which residency keys append after ``#``)."""
        return any(
            o == owner and (s == source or s.startswith(source + "#")) for o, s in self.models
        )

    @property
    def running(self) -> int:
        return len(self.pending)

    # -- lifecycle ---------------------------------------------------------------------------
    async def supervise(self) -> None:
        """Keep the worker running until cancelled; restart it with backoff when it dies."""
        failures = 0
        while not self._closing:
            started = time.monotonic()
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker failed", extra={"worker": self.name})
            if self._closing:
                return
            failures = 0 if time.monotonic() - started >= STABLE_AFTER_S else failures + 1
            delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)] if failures else BACKOFF_S[0]
            log.warning(
                "worker stopped (exit %s); restarting in %.1f s",
                self.last_exit,
                delay,
                extra={"worker": self.name},
            )
            await asyncio.sleep(delay)

    async def _run_once(self) -> None:
        parent, child = socket.socketpair()
        env = {**os.environ, **self.spec.child_environment()}
        command = [
            self.python,
            "-m",
            "gpubridge",
            "worker",
            "--fd",
            str(child.fileno()),
            "--name",
            self.name,
            "--device",
            self.spec.runtime_device,
        ]
        if self.memory_budget_bytes is not None:
            command += ["--memory-budget-bytes", str(self.memory_budget_bytes)]
        try:
            self.process = await asyncio.create_subprocess_exec(
                *command, pass_fds=(child.fileno(),), env=env, stdin=asyncio.subprocess.DEVNULL
            )
        finally:
            child.close()
        self.starts += 1
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=2**20)
        self._writer = writer
        try:
            async with asyncio.timeout(self.start_timeout_s):
                hello = await protocol.read(reader)
            if hello is None or hello.op != "hello":
                raise protocol.ProtocolError("the worker did not say hello")
            self._note(hello)
            if self._died_at is not None:
                self.last_restart_s = time.monotonic() - self._died_at
                log.info(
                    "worker back after %.2f s",
                    self.last_restart_s,
                    extra={"worker": self.name},
                )
            else:
                log.info(
                    "worker started",
                    extra={"worker": self.name, "device": self.spec.device, "pid": hello.header},
                )
            self.ready.set()
            await self._read_loop(reader)
        finally:
            self.ready.clear()
            self._writer = None
            writer.close()
            await self._reap()
            self._died_at = time.monotonic()
            self.models.clear()
            lost, self.pending = self.pending, {}
            for queue in lost.values():
                queue.put_nowait(None)
            for waiter in self._status_waiters:
                if not waiter.done():
                    waiter.set_exception(WorkerLost(self.name))
            self._status_waiters.clear()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while (message := await protocol.read(reader)) is not None:
                self._note(message)
                if message.op == "status":
                    for waiter in self._status_waiters:
                        if not waiter.done():
                            waiter.set_result(self.status)
                    self._status_waiters.clear()
                job = message.job
                if job is not None and job in self.pending:
                    self.pending[job].put_nowait(message)
        except (protocol.ProtocolError, ConnectionError) as exc:
            log.error("worker connection broke: %s", exc, extra={"worker": self.name})

    def _note(self, message: Message) -> None:
        if "models" in message.header:
            self.models = {(str(a), str(b)) for a, b in message.header["models"]}
        if message.op in ("hello", "status"):
            self.status = {k: v for k, v in message.header.items() if k != "op"}

    async def _reap(self) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            # The connection broke but the process lives on (a hung runtime): end it.
            process.kill()
        self.last_exit = await process.wait()

    async def close(self) -> None:
        """Stop supervising and end the process: SIGTERM, then SIGKILL after a few seconds."""
        self._closing = True
        if self._writer is not None:
            self._writer.close()
        process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()

    def kill(self) -> None:
        """End the process at once (a job that would not stop); the supervisor restarts it."""
        if self.process is not None and self.process.returncode is None:
            log.warning("killing worker", extra={"worker": self.name})
            self.process.kill()

    # -- messages -----------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        if self._writer is None:
            raise WorkerLost(self.name)
        try:
            await protocol.write(self._writer, message)
        except (ConnectionError, RuntimeError) as exc:
            raise WorkerLost(self.name) from exc

    def open_job(self, job_id: str) -> asyncio.Queue[Message | None]:
        queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self.pending[job_id] = queue
        return queue

    def close_job(self, job_id: str, queue: asyncio.Queue[Message | None]) -> None:
        if self.pending.get(job_id) is queue:
            del self.pending[job_id]

    async def refresh_status(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Ask the worker for its status (models, memory, running jobs)."""
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._status_waiters.append(waiter)
        await self.send(Message({"op": "status"}))
        async with asyncio.timeout(timeout_s):
            return await waiter
