"""Token events coalesced into fewer frames between a worker and its gateway.

A batched LLM runtime (vLLM) makes one token per running request per step: at concurrency 16
that is a frame per token per request, each encoded, written, read, decoded and relayed by the
gateway. ``TokenBatcher`` joins a job's consecutive tokens into one ``token`` event, sent at most
``every_s`` after the first of them or as soon as ``max_tokens`` are waiting, so a token is late
by a few milliseconds at most, and any other event (progress, the result) is sent after the
tokens before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gpubridge.engines.base import EngineEvent

FLUSH_EVERY_S = 0.005
MAX_TOKENS = 64


class TokenBatcher:
    """An ``Emit`` that coalesces ``token`` events before handing them to ``send``."""

    def __init__(
        self,
        send: Callable[[EngineEvent], Awaitable[None]],
        *,
        every_s: float = FLUSH_EVERY_S,
        max_tokens: int = MAX_TOKENS,
    ) -> None:
        self._send = send
        self.every_s = every_s
        self.max_tokens = max_tokens
        self._pieces: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        self.frames = 0
        """How many token events went out (for tests and figures)."""

    async def __call__(self, event: EngineEvent) -> None:
        text = event.data.get("text") if event.kind == "token" else None
        if isinstance(text, str) and len(event.data) == 1:
            self._pieces.append(text)
            if len(self._pieces) >= self.max_tokens:
                await self.flush()
            elif self._timer is None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self.every_s, self._flush_later)
            return
        await self.flush()
        await self._send(event)

    async def flush(self) -> None:
        """Send the tokens waiting, if any, as one event."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pieces:
            return
        text = "".join(self._pieces)
        self._pieces = []
        self.frames += 1
        await self._send(EngineEvent("token", {"text": text}))

    def discard(self) -> None:
        """Drop the tokens waiting (the job was stopped)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pieces = []

    def _flush_later(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)
