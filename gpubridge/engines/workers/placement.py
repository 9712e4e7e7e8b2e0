"""Which worker processes a machine runs: their devices, services and memory budgets.

Devices are found without importing torch (the gateway never loads a model runtime):
``nvidia-smi`` lists the GPUs; without one, a single CPU worker serves everything.
"""

from __future__ import annotations

import shutil
import subprocess

from gpubridge.settings import WorkerSpec

VLLM_SHARE_BOUNDS = (0.05, 0.95)
"""The least and most of a card vLLM is given: below, it could not hold a KV cache; above, the
CUDA context and activations would not fit beside it."""
VLLM_SHARE_UNLIMITED = 0.9
"""vLLM's own default, for a worker with no memory limit."""


def visible_gpus() -> list[int]:
    """Indexes of the NVIDIA GPUs on this machine, from ``nvidia-smi`` (empty without one)."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        listed = subprocess.run(  # noqa: S603 (a fixed command found on PATH)
            [binary, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(line) for line in listed.split() if line.strip().isdigit()]


def default_workers(default_memory_mb: int | None) -> list[WorkerSpec]:
    """One worker per GPU serving every service, or one CPU worker on a machine without one."""
    gpus = visible_gpus()
    devices = [f"cuda:{i}" for i in gpus] or ["cpu"]
    return [WorkerSpec(device=d, memory_mb=default_memory_mb) for d in devices]


def named(specs: list[WorkerSpec]) -> list[WorkerSpec]:
    """The specs with a unique name each."""
    return [
        spec if spec.name else spec.model_copy(update={"name": f"worker-{i}"})
        for i, spec in enumerate(specs)
    ]


def vllm_memory_share(budget_bytes: int | None, total_bytes: int) -> float:
    """vLLM's ``gpu_memory_utilization`` in a worker whose model memory budget is
    ``budget_bytes`` on a device of ``total_bytes``: the budget's share of the device, clamped
    to ``VLLM_SHARE_BOUNDS`` (``VLLM_SHARE_UNLIMITED`` for a worker with no limit)."""
    if total_bytes <= 0:
        raise ValueError(f"the device's memory must be positive, not {total_bytes}")
    if budget_bytes is None:
        return VLLM_SHARE_UNLIMITED
    low, high = VLLM_SHARE_BOUNDS
    return round(min(max(budget_bytes / total_bytes, low), high), 4)
