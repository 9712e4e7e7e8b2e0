"""Helpers shared by the local runtimes: where weights come from, which device, freeing memory.

torch and huggingface_hub are imported inside the functions, which run in worker threads.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpubridge.engines.base import Emit, EngineEvent
from gpubridge.engines.cancellation import current_flag, raise_if_cancelled


def is_local_path(source: str) -> bool:
    """Whether ``source`` names a directory on disk rather than a hub repository id."""
    return source.startswith(("/", "./", "../", "~")) or Path(source).exists()


PACKAGE_PREFIX = "package:"


def package_path(source: str) -> Path:
    """The directory that a ``package:<module>/<path inside it>`` source names: weights that an
    installed Python package ships. The package is found, never imported (some such packages
    import runtimes of their own that gpubridge does not use)."""
    from importlib.util import find_spec

    module, _, inner = source.removeprefix(PACKAGE_PREFIX).partition("/")
    spec = find_spec(module) if module else None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{source}: the package {module!r} is not installed (see the 'starter' extra)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / inner if inner else root


def resolve_source(source: str) -> tuple[str, bool]:
    """The location to load from, and whether to stay off the network (a path, a packaged
    model, or offline mode)."""
    from huggingface_hub import is_offline_mode

    if source.startswith(PACKAGE_PREFIX):
        return str(package_path(source)), True
    if is_local_path(source):
        return str(Path(source).expanduser()), True
    return source, is_offline_mode()


def from_pretrained(loader: Any, location: str, **options: Any) -> Any:
    """``loader.from_pretrained(location, **options)``. The loader is taken as ``Any`` because
    transformers' annotations of processors and feature extractors change between releases,
    and a call site typed against one release fails type checking against the next."""
    return loader.from_pretrained(location, **options)


def pick_device(requested: str | None) -> str:
    """``requested`` if given, else ``cuda`` when available, else ``cpu``."""
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def release_memory() -> None:
    """Collect garbage and return cached accelerator memory after models are dropped."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def model_bytes(value: object, _seen: set[int] | None = None) -> int:
    """Bytes held by the tensors of a loaded model: torch modules, diffusers pipelines (their
    ``components``), and tuples, lists, dicts or plain objects holding them."""
    import torch

    seen = _seen if _seen is not None else set()
    if id(value) in seen:
        return 0
    seen.add(id(value))
    reserved = getattr(value, "reserved_device_bytes", None)
    if isinstance(reserved, int):  # a runtime that sets its memory aside itself (vLLM)
        return reserved
    if isinstance(value, torch.nn.Module):
        tensors = [*value.parameters(), *value.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors if id(t) not in seen)
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    components = getattr(value, "components", None)
    if isinstance(components, dict):
        return sum(model_bytes(v, seen) for v in components.values())
    if isinstance(value, dict):
        return sum(model_bytes(v, seen) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(model_bytes(v, seen) for v in value)
    fields = getattr(value, "__dict__", None)
    if isinstance(fields, dict) and not isinstance(value, type):
        return sum(model_bytes(v, seen) for v in fields.values())
    return 0


def default_memory_budget_bytes() -> int:
    """80% of the first accelerator's memory, else half of the machine's memory."""
    import os

    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(0).total_memory * 0.8)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)


def threadsafe_emit(emit: Emit) -> Callable[[EngineEvent], None]:
    """A plain callable for worker threads (diffusion step callbacks, streamers) that hands
    each event to the job's async ``emit`` on the calling event loop, without waiting.

    Once the job is cancelled (see ``cancellation``), sending raises ``JobCancelled``: the
    step loop that reports progress stops at its next step."""
    loop = asyncio.get_running_loop()
    flag = current_flag()

    def send(event: EngineEvent) -> None:
        raise_if_cancelled(flag)
        asyncio.run_coroutine_threadsafe(_deliver(emit, event), loop)

    return send


async def _deliver(emit: Emit, event: EngineEvent) -> None:
    await emit(event)


def progress_event(stage: str, step: int, total: int, **extra: Any) -> EngineEvent:
    """A ``progress`` event: ``{"stage", "step", "total", "percent", ...}``."""
    percent = round(100.0 * step / total, 1) if total else 0.0
    return EngineEvent(
        "progress", {"stage": stage, "step": step, "total": total, "percent": percent, **extra}
    )
