"""Models kept resident in memory: each loaded once, on first use, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Resident(Generic[T]):
    """Loaded models by source.

    Concurrent first uses of one source await a single shared load, which runs in a worker
    thread. A caller that is cancelled while waiting does not cancel the load: the model still
    becomes resident for the next caller. A failed load is retried by the next caller.
    """

    def __init__(self) -> None:
        self._loaded: dict[str, T] = {}
        self._loading: dict[str, asyncio.Future[T]] = {}
        self._generation = 0

    def __contains__(self, source: object) -> bool:
        return source in self._loaded

    async def get(self, source: str, load: Callable[[], T]) -> T:
        """The model for ``source``, calling ``load`` in a worker thread the first time."""
        if source in self._loaded:
            return self._loaded[source]
        pending = self._loading.get(source)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(load))
            self._loading[source] = pending
            generation = self._generation
            pending.add_done_callback(lambda f: self._settle(source, generation, f))
        return await asyncio.shield(pending)

    def _settle(self, source: str, generation: int, done: asyncio.Future[T]) -> None:
        if self._loading.get(source) is done:
            del self._loading[source]
        if done.cancelled() or done.exception() is not None:
            return
        if generation == self._generation:
            self._loaded[source] = done.result()

    def clear(self) -> list[T]:
        """Forget every model (loads still running are dropped when they end) and return them."""
        self._generation += 1
        models = list(self._loaded.values())
        self._loaded.clear()
        self._loading.clear()
        return models
