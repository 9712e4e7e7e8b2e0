"""Which workers a machine runs: one per GPU (found without torch), or one on the CPU."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gpubridge.engines.workers.placement import default_workers, named, visible_gpus
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
