"""One supervised worker process: started, watched, restarted with backoff when it dies."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from gpubridge.engines.workers import protocol
from gpubridge.engines.workers.channels import StreamChannel
from gpubridge.engines.workers.groups import kill_group
from gpubridge.engines.workers.link import WorkerLink, WorkerLost
from gpubridge.settings import WorkerSpec

__all__ = ["WorkerLost", "WorkerProcess"]

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0
"""A worker that lived this long has its backoff reset."""


class WorkerProcess(WorkerLink):
    """A ``gpubridge worker`` child process and the jobs in flight on it.

    The worker leads a process group of its own: the processes its runtimes start (vLLM's
    engine core) are in it, and every way the worker ends (killed, crashed, stopped) ends the
    whole group, so none of them keeps holding the device."""

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        memory_budget_bytes: int | None,
        start_timeout_s: float,
        python: str = sys.executable,
    ) -> None:
        super().__init__(spec, memory_budget_bytes)
        self.start_timeout_s = start_timeout_s
        self.python = python
        self.process: asyncio.subprocess.Process | None = None
        self._died_at: float | None = None
        self._closing = False

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

    def _command(self, fd: int) -> list[str]:
        command = [self.python, "-m", "gpubridge", "worker", "--fd", str(fd)]
        command += ["--name", self.name, "--device", self.spec.runtime_device]
        if self.memory_budget_bytes is not None:
            command += ["--memory-budget-bytes", str(self.memory_budget_bytes)]
        return command

    async def _run_once(self) -> None:
        parent, child = socket.socketpair()
        env = {**os.environ, **self.spec.child_environment()}
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self._command(child.fileno()),
                pass_fds=(child.fileno(),),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            child.close()
        self.starts += 1
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=2**20)
        channel = StreamChannel(reader, writer)
        try:
            async with asyncio.timeout(self.start_timeout_s):
                hello = await self._unless_exited(channel.receive())
            if hello is None or hello.op != "hello":
                raise protocol.ProtocolError("the worker did not say hello")
            if self._died_at is not None:
                self.last_restart_s = time.monotonic() - self._died_at
                log.info(
                    "worker back after %.2f s", self.last_restart_s, extra={"worker": self.name}
                )
            else:
                log.info("worker started", extra={"worker": self.name, "device": self.spec.device})
            await self._unless_exited(self.serve_channel(channel, hello))
        finally:
            await channel.close()
            await self._reap()
            self._died_at = time.monotonic()
            self.lose_all()

    async def _unless_exited(self, work: Coroutine[Any, Any, T]) -> T | None:
        """``work``'s result, or ``None`` once the worker process exited. The process's end is
        watched besides the socket's: a process the worker forked (a runtime's engine core)
        inherits its end of the socket and keeps it open after the worker died."""
        assert self.process is not None
        doing = asyncio.ensure_future(work)
        exited = asyncio.ensure_future(self.process.wait())
        try:
            await asyncio.wait({doing, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (doing, exited):
                task.cancel()
            await asyncio.gather(doing, exited, return_exceptions=True)
        return doing.result() if not doing.cancelled() else None

    async def _reap(self) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            # The connection ended but the process lives on: give a worker that is stopping
            # (SIGTERM) time to exit; end one that broke its connection otherwise (hung).
            try:
                async with asyncio.timeout(5.0 if self._closing else 0.5):
                    await process.wait()
            except TimeoutError:
                kill_group(process.pid)
        self.last_exit = await process.wait()
        # Whatever the worker started and left behind (it died of SIGKILL, OOM, a segfault).
        kill_group(process.pid)

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop supervising and end the process: SIGTERM (the worker stops its jobs and exits),
        then SIGKILL to its whole process group after ``grace_s``."""
        self._closing = True
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace_s):
                    await process.wait()
            except TimeoutError:
                kill_group(process.pid)
                await process.wait()
        kill_group(process.pid)

    def kill(self) -> None:
        """End the process and everything it started at once (a job that would not stop); the
        supervisor restarts it."""
        if self.process is not None and self.process.returncode is None:
            log.warning("killing worker", extra={"worker": self.name})
            kill_group(self.process.pid)
