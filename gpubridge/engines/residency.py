"""Models kept resident in memory: loaded once on first use, off the event loop, and evicted
least recently used first when the loaded models outgrow a memory budget."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from gpubridge.engines.base import Emit, EngineEvent

T = TypeVar("T")
log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(owner, source): the engine that loaded a model, and where its weights came from."""

Measure = Callable[[Any], int]


@dataclass
class _Entry:
    value: Any
    size_bytes: int


def _measure_bytes(value: Any) -> int:
    from gpubridge.engines.local import model_bytes

    return model_bytes(value)


class ModelCache:
    """Every resident model of a process, in least-recently-used order.

    Concurrent first uses of one key await a single shared load running in a worker thread. A
    caller cancelled while waiting does not cancel the load: the model still becomes resident.
    A failed load is retried by the next caller. After each load, the least recently used other
    models are dropped until the total fits ``budget_bytes`` (``None``: no limit; ``0``: a
    budget measured on first load from the accelerator's or the machine's memory). A dropped
    model is freed once the jobs still using it end.
    """

    def __init__(
        self,
        budget_bytes: int | None = None,
        *,
        measure: Measure = _measure_bytes,
        after_evict: Callable[[], None] | None = None,
    ) -> None:
        self.budget_bytes = budget_bytes
        self._measure = measure
        self._after_evict = after_evict
        self._loaded: OrderedDict[Key, _Entry] = OrderedDict()
        self._loading: dict[Key, asyncio.Future[_Entry]] = {}
        self._generation: dict[str, int] = {}
        self.evictions = 0

    def __contains__(self, key: object) -> bool:
        return key in self._loaded

    @property
    def resident_bytes(self) -> int:
        return sum(entry.size_bytes for entry in self._loaded.values())

    def keys(self) -> list[Key]:
        """Resident keys, least recently used first."""
        return list(self._loaded)

    async def get(
        self,
        key: Key,
        load: Callable[[], T],
        *,
        emit: Emit | None = None,
        label: str | None = None,
    ) -> T:
        """The model for ``key``, calling ``load`` in a worker thread the first time.

        ``emit`` (a job's event sink) hears ``progress`` events with stage ``loading_model``
        and ``model_loaded`` when this call has to wait for a load.
        """
        entry = self._loaded.get(key)
        if entry is not None:
            self._loaded.move_to_end(key)
            return cast(T, entry.value)
        # The load is joined (or started) before the event is sent: a load that ended while
        # this call awaited the event would otherwise be started again.
        started = time.perf_counter()
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(self._load, load))
            self._loading[key] = pending
            generation = self._generation.get(key[0], 0)
            pending.add_done_callback(lambda f: self._settle(key, generation, f))
        name = label or key[1]
        if emit is not None:
            await emit(EngineEvent("progress", {"stage": "loading_model", "model": name}))
        entry = await asyncio.shield(pending)
        if emit is not None:
            seconds = round(time.perf_counter() - started, 3)
            await emit(
                EngineEvent(
                    "progress", {"stage": "model_loaded", "model": name, "seconds": seconds}
                )
            )
        return cast(T, entry.value)

    def _load(self, load: Callable[[], Any]) -> _Entry:
        value = load()
        try:
            size = self._measure(value)
        except Exception:
            log.warning("could not measure a loaded model's size", exc_info=True)
            size = 0
        if self.budget_bytes == 0:
            from gpubridge.engines.local import default_memory_budget_bytes

            self.budget_bytes = default_memory_budget_bytes()
        return _Entry(value, size)

    def _settle(self, key: Key, generation: int, done: asyncio.Future[_Entry]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]
        if done.cancelled() or done.exception() is not None:
            return
        if generation != self._generation.get(key[0], 0):
            return
        self._loaded[key] = done.result()
        self._loaded.move_to_end(key)
        self._evict_over_budget(keep=key)

    def _evict_over_budget(self, keep: Key) -> None:
        if not self.budget_bytes:
            return
        evicted = False
        for key in list(self._loaded):
            if self.resident_bytes <= self.budget_bytes:
                break
            if key == keep:
                continue
            entry = self._loaded.pop(key)
            self.evictions += 1
            evicted = True
            log.info(
                "evicted a resident model to stay under the memory budget",
                extra={"owner": key[0], "source": key[1], "size_bytes": entry.size_bytes},
            )
        if evicted and self._after_evict is not None:
            asyncio.get_running_loop().run_in_executor(None, self._after_evict)

    def clear(self, owner: str) -> list[Any]:
        """Forget ``owner``'s models (its loads still running are dropped when they end)."""
        self._generation[owner] = self._generation.get(owner, 0) + 1
        dropped = [self._loaded.pop(k).value for k in list(self._loaded) if k[0] == owner]
        for key in [k for k in self._loading if k[0] == owner]:
            del self._loading[key]
        return dropped


class Resident(Generic[T]):
    """One engine's view of a ``ModelCache``: its models by source.

    Without a cache it keeps its own unbounded one.
    """

    def __init__(self, cache: ModelCache | None = None, owner: str = "") -> None:
        self._cache = cache if cache is not None else ModelCache()
        self._owner = owner or f"engine-{id(self)}"

    def __contains__(self, source: object) -> bool:
        return (self._owner, source) in self._cache

    async def get(
        self,
        source: str,
        load: Callable[[], T],
        *,
        emit: Emit | None = None,
        label: str | None = None,
    ) -> T:
        """The model for ``source``, loading it the first time (see ``ModelCache.get``)."""
        return await self._cache.get((self._owner, source), load, emit=emit, label=label)

    def clear(self) -> list[T]:
        """Forget every model of this engine and return those that were loaded."""
        return cast(list[T], self._cache.clear(self._owner))
