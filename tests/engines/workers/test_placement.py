"""Which workers a machine runs: one per GPU (found without torch), or one on the CPU."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gpubridge.engines.workers.placement import (
    default_workers,
    named,
    visible_gpus,
    vllm_memory_share,
)
from gpubridge.settings import Settings, WorkerSpec


def fake_nvidia_smi(directory: Path, output: str) -> None:
    tool = directory / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


def test_without_nvidia_smi_one_cpu_worker_serves_everything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert visible_gpus() == []
    (spec,) = named(default_workers(None))
    assert spec.name == "worker-0" and spec.device == "cpu"
    assert spec.serves("llm-4090") and spec.serves("image-4090")
    assert spec.child_environment() == {"CUDA_VISIBLE_DEVICES": ""}


def test_each_listed_gpu_gets_a_worker_that_sees_only_its_own_card(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_nvidia_smi(tmp_path, "0\\n1\\n")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    specs = named(default_workers(20_000))
    assert [(s.name, s.device, s.memory_mb) for s in specs] == [
        ("worker-0", "cuda:0", 20_000),
        ("worker-1", "cuda:1", 20_000),
    ]
    assert specs[1].child_environment() == {"CUDA_VISIBLE_DEVICES": "1"}
    assert specs[1].runtime_device == "cuda"


def test_placement_comes_from_settings_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GPUBRIDGE_WORKERS",
        '[{"name": "llm", "device": "cuda:0", "services": ["llm-*"], "memory_mb": 70000},'
        ' {"device": "cuda:1", "services": ["image-*", "video-*"]}]',
    )
    llm, media = named(Settings().workers)
    assert llm.serves("llm-4090") and not llm.serves("image-4090")
    assert media.name == "worker-1" and media.serves("video-4090") and media.memory_mb is None


def test_a_device_that_is_neither_cpu_nor_a_cuda_index_is_refused() -> None:
    with pytest.raises(ValueError):
        WorkerSpec(device="gpu0")


GIB = 1024**3


@pytest.mark.parametrize(
    ("budget", "total", "share"),
    [
        (20 * GIB, 80 * GIB, 0.25),  # a 20 GiB budget on an 80 GiB card
        (64 * GIB, 80 * GIB, 0.8),  # the default budget: 80% of the card
        (79 * GIB, 80 * GIB, 0.95),  # no room left for the CUDA context: capped
        (80 * GIB, 80 * GIB, 0.95),
        (100 * GIB, 80 * GIB, 0.95),  # a budget larger than the card
        (1 * GIB, 80 * GIB, 0.05),  # too small to hold a KV cache: raised to the floor
        (0, 24 * GIB, 0.05),
        (None, 24 * GIB, 0.9),  # no limit: vLLM's own default
    ],
)
def test_vllms_share_of_the_card_is_the_workers_budget_clamped(
    budget: int | None, total: int, share: float
) -> None:
    assert vllm_memory_share(budget, total) == pytest.approx(share)


def test_a_device_without_memory_has_no_share() -> None:
    with pytest.raises(ValueError):
        vllm_memory_share(GIB, 0)


def test_the_catalog_leaves_vllms_memory_share_to_the_workers_budget() -> None:
    from gpubridge.catalog.loader import load_catalog_file

    vllm_backends = [
        backend
        for service in load_catalog_file().services.values()
        for backend in service.backends
        if backend.type == "vllm"
    ]
    assert vllm_backends
    assert all("gpu_memory_utilization" not in b.options for b in vllm_backends)
