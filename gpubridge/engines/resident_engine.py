"""The skeleton of the local engines: models kept resident per engine, loaded off the event loop,
work timed in worker threads, and failures turned into ``BackendError`` (the router may fail
over to the next backend).

torch is imported inside the functions, which run in worker threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from gpubridge.engines.base import BackendConfig, Emit, EngineContext, ModelRef, Usage
from gpubridge.engines.local import release_memory
from gpubridge.engines.residency import Resident
from gpubridge.errors import BackendError, GpubridgeError

if TYPE_CHECKING:
    import torch

M = TypeVar("M")
T = TypeVar("T")


async def timed(name: str, work: Callable[[], T], action: str = "generation") -> tuple[T, float]:
    """Run ``work`` in a worker thread and return its result and wall seconds; failures other
    than gpubridge errors become ``BackendError("<name>: <action> failed: ...")``."""
    started = time.perf_counter()
    try:
        result = await asyncio.to_thread(work)
    except GpubridgeError:
        raise
    except Exception as exc:
        raise BackendError(f"{name}: {action} failed: {exc!r}") from exc
    return result, time.perf_counter() - started


def pick_dtype(name: str | None, device: str) -> torch.dtype:
    """The torch dtype named ``name``; without one (or with ``auto``) float16 on CUDA and float32
    elsewhere."""
    import torch

    if name and name != "auto":
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown dtype {name!r}")
        return dtype
    return torch.float16 if device.startswith("cuda") else torch.float32


@dataclass
class GeneratedText:
    """Text a model generated, the tokens it read and wrote, and the seconds that took."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float

    def usage(self) -> Usage:
        """The job's usage: its tokens and compute seconds."""
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            compute_seconds=self.seconds,
        )


class ResidentEngine(Generic[M]):
    """Base of the local engines whose models stay resident in the process's model cache.

    Subclasses implement ``load_model`` (blocking; run in a worker thread once per resident
    key) and ``run``; ``source_of`` (where a model's weights are) and ``resident_key`` (what its
    loaded form is kept under) default to the model's ``source``. Backend options are
    ``options``; ``device`` is the backend's ``device`` option (``None``: pick one).
    """

    def __init__(
        self, config: BackendConfig, context: EngineContext | None = None, *, owner: str = ""
    ) -> None:
        self.name = config.name
        self.options: dict[str, Any] = dict(config.options)
        self.device: str | None = config.options.get("device")
        cache = context.model_cache() if context is not None else None
        self._models: Resident[Any] = Resident(cache, owner or config.name)

    def option(self, ref: ModelRef, key: str, default: Any = None) -> Any:
        """The model's option ``key``, else the backend's, else ``default``."""
        return ref.options.get(key, self.options.get(key, default))

    def options_for(self, ref: ModelRef) -> dict[str, Any]:
        """The backend's options overridden by the model's."""
        return {**self.options, **ref.options}

    def source_of(self, ref: ModelRef) -> str:
        """Where ``ref``'s weights for this engine live."""
        return ref.source

    def resident_key(self, ref: ModelRef) -> str:
        """What ``ref``'s loaded model is kept under (its source unless loading options vary)."""
        return self.source_of(ref)

    def load_model(self, ref: ModelRef) -> M:
        """Load ``ref``'s model (blocking; runs in a worker thread)."""
        raise NotImplementedError

    async def model(self, ref: ModelRef, emit: Emit | None = None) -> M:
        """``ref``'s resident model, loading it on first use."""
        return await self.resident(
            self.resident_key(ref),
            lambda: self.load_model(ref),
            emit=emit,
            label=ref.id,
            source=self.source_of(ref),
        )

    async def resident(
        self,
        key: str,
        load: Callable[[], T],
        *,
        emit: Emit | None = None,
        label: str | None = None,
        source: str | None = None,
    ) -> T:
        """The model kept under ``key``, calling ``load`` in a worker thread the first time; a
        failed load becomes ``BackendError`` naming ``source`` (default: ``key``)."""
        try:
            value: T = await self._models.get(key, load, emit=emit, label=label)
        except GpubridgeError:
            raise
        except Exception as exc:
            raise BackendError(f"{self.name}: could not load {source or key}: {exc}") from exc
        return value

    async def timed(self, work: Callable[[], T], action: str = "generation") -> tuple[T, float]:
        """``timed`` under this engine's name."""
        return await timed(self.name, work, action)

    async def load(self, model: ModelRef) -> None:
        """Make ``model`` resident before its first job."""
        await self.model(model)

    async def health(self) -> bool:
        """Local engines are healthy while the process runs."""
        return True

    async def unload(self) -> None:
        """Drop this engine's resident models and free their memory."""
        if self._models.clear():
            await asyncio.to_thread(release_memory)
