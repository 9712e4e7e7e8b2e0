"""An in-memory ``Engine`` that follows a script: stream some tokens, wait, fail or answer."""

from __future__ import annotations

import asyncio
from typing import Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineEvent,
    EngineFactory,
    EngineRequest,
    EngineResult,
    ModelRef,
    Usage,
)


class ScriptedEngine:
    """Streams ``tokens``, waits for ``gate`` if given, then raises ``error`` or answers."""

    def __init__(
        self,
        name: str,
        *,
        tokens: tuple[str, ...] = ("ok",),
        error: BaseException | None = None,
        gate: asyncio.Event | None = None,
        usage: Usage | None = None,
    ) -> None:
        self.name = name
        self.usage = usage
        """What to report having used (default: one completion token per token)."""
        self.tokens = tokens
        self.error = error
        self.gate = gate
        self.calls = 0
        self.running = 0
        self.max_running = 0
        self.unloaded = False
        self.started: asyncio.Queue[str] = asyncio.Queue()

    async def load(self, model: ModelRef) -> None:
        return None

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        self.calls += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.started.put_nowait(request.job_id)
        try:
            for token in self.tokens:
                await emit(EngineEvent("token", {"text": token}))
            if self.gate is not None:
                await self.gate.wait()
            if self.error is not None:
                raise self.error
            output: dict[str, Any] = {"text": "".join(self.tokens), "served_by": self.name}
            usage = self.usage or Usage(completion_tokens=len(self.tokens))
            return EngineResult(output, usage)
        finally:
            self.running -= 1

    async def health(self) -> bool:
        return True

    async def unload(self) -> None:
        self.unloaded = True


def factory_for(engines: dict[str, ScriptedEngine]) -> EngineFactory:
    """A factory handing out the prepared engine named like the backend."""

    def create(config: BackendConfig, context: EngineContext) -> ScriptedEngine:
        return engines[config.name]

    return create
