"""Helpers shared by the local runtimes: where weights come from, which device, freeing memory.

torch and huggingface_hub are imported inside the functions, which run in worker threads.
"""

from __future__ import annotations

import gc
from pathlib import Path


def is_local_path(source: str) -> bool:
    """Whether ``source`` names a directory on disk rather than a hub repository id."""
    return source.startswith(("/", "./", "../", "~")) or Path(source).exists()


def resolve_source(source: str) -> tuple[str, bool]:
    """The location to load from, and whether to stay off the network (a path, or offline)."""
    from huggingface_hub import is_offline_mode

    if is_local_path(source):
        return str(Path(source).expanduser()), True
    return source, is_offline_mode()


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
