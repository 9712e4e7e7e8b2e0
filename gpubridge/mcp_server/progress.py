"""Progress notifications while a tool call waits for its job."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from gpubridge.gateway import Gateway
from gpubridge.jobs.store import JobRecord

log = logging.getLogger(__name__)

Report = Callable[[float, float | None, str | None], Awaitable[None]]
"""Sends one ``notifications/progress`` (progress, total, message) for the current request."""

HEARTBEAT_S = 5.0
"""With no news for this long, say the job is still going (clients reset timeouts on it)."""
TOKEN_REPORT_S = 0.5
"""Streamed tokens are summed up at most this often."""


class Progress:
    """Numbered progress messages; the number only grows, as MCP requires."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._count = 0
        self._lock = asyncio.Lock()
        self.last_said = time.monotonic()

    async def say(self, message: str) -> None:
        async with self._lock:
            self._count += 1
            self.last_said = time.monotonic()
            try:
                await self._report(self._count, None, message)
            except Exception:
                # A client that stopped listening must not disturb the job.
                log.debug("progress notification not delivered", exc_info=True)


@asynccontextmanager
async def progress_while_waiting(
    gateway: Gateway, job: JobRecord, progress: Progress
) -> AsyncIterator[None]:
    """Report the job's status changes, progress and tokens until the block ends."""
    watcher = _Watcher(gateway, job, progress)
    tasks = [
        asyncio.create_task(watcher.follow()),
        asyncio.create_task(watcher.heartbeat(HEARTBEAT_S)),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Watcher:
    def __init__(self, gateway: Gateway, job: JobRecord, progress: Progress) -> None:
        self.gateway = gateway
        self.job_id = job.id
        self.progress = progress
        self.status: str | None = None
        self.started = time.monotonic()
        self.tokens = 0
        self._tokens_said_at = 0.0

    async def follow(self) -> None:
        try:
            async for item in self.gateway.stream(self.job_id):
                message = self._describe(item["event"], item["data"])
                if message:
                    await self.progress.say(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("job events ended early", exc_info=True, extra={"job_id": self.job_id})

    async def heartbeat(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            if time.monotonic() - self.progress.last_said >= every_s:
                elapsed = time.monotonic() - self.started
                await self.progress.say(f"still {self.status or 'pending'} after {elapsed:.0f} s")

    def _describe(self, event: str, data: dict[str, Any]) -> str | None:
        if event == "status":
            status = data.get("status")
            if not isinstance(status, str) or status == self.status:
                return None
            self.status = status
            return status_text(status, data)
        if event == "token":
            self.tokens += 1
            now = time.monotonic()
            if now - self._tokens_said_at < TOKEN_REPORT_S:
                return None
            self._tokens_said_at = now
            return f"{self.tokens} tokens generated"
        if event == "progress":
            return progress_text(data)
        message = data.get("message")
        return message if isinstance(message, str) else None


def status_text(status: str, view: dict[str, Any]) -> str:
    """A job's status in words, from its view (or a status event's data)."""
    if status == "pending":
        return "queued, waiting for a GPU"
    if status == "completed" and view.get("execution_time_seconds") is not None:
        return f"completed in {view['execution_time_seconds']} s"
    error = view.get("error")
    if status == "failed" and isinstance(error, dict):
        return f"failed: {error.get('message')}"
    return status


def progress_text(data: dict[str, Any]) -> str:
    """A progress event (or a job's last persisted progress) in words."""
    if isinstance(data.get("message"), str):
        return str(data["message"])
    stage = data.get("stage")
    if stage == "loading_model":
        return f"loading model {data.get('model')}"
    if stage == "model_loaded":
        return f"model {data.get('model')} loaded in {data.get('seconds')} s"
    step, total = data.get("step"), data.get("total")
    if isinstance(step, int | float) and isinstance(total, int | float) and total:
        text = f"step {step:g} of {total:g} ({100 * step / total:.0f}%)"
        return f"{stage}: {text}" if isinstance(stage, str) else text
    return ", ".join(f"{key} {value}" for key, value in data.items()) or "working"
