"""Which weights this machine holds: a Hugging Face cache laid out on disk, packages, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubridge.catalog import weights
from gpubridge.catalog.weights import (
    directory_size,
    hub_cache_dir,
    hub_offline,
    local_backend,
    locate,
    scan_hub_cache,
)
from gpubridge.engines.base import BackendConfig
from gpubridge.engines.runtimes import Weights
from tests.support.hf_cache import cache_model, use_hub

CONFIG = b'{"model_type": "bert"}'


def test_a_cached_repository_is_held_with_its_files_and_size(tmp_path: Path) -> None:
    cache_model(tmp_path, "BAAI/bge-m3", {"config.json": CONFIG, "onnx/model.onnx": b"x" * 100})
    cache = scan_hub_cache(tmp_path)
    repo = cache.repos["BAAI/bge-m3"]
    assert repo.size_bytes == len(CONFIG) + 100
    assert repo.revision("main") is not None
    assert cache.holds(Weights("BAAI/bge-m3"))
    assert cache.holds(Weights("BAAI/bge-m3", ("onnx/model.onnx", "config.json")))
    assert cache.holds(Weights("BAAI/bge-m3", ("onnx/*",)))
    assert not cache.holds(Weights("BAAI/bge-m3", ("onnx/model_fp16.onnx",)))
    assert not cache.holds(Weights("BAAI/bge-large-en-v1.5"))


def test_a_pinned_revision_is_held_only_when_that_revision_is_cached(tmp_path: Path) -> None:
    snapshot = cache_model(tmp_path, "vikhyatk/moondream2", {"config.json": CONFIG})
    cache = scan_hub_cache(tmp_path)
    assert not cache.holds(Weights("vikhyatk/moondream2", revision="2025-06-21"))
    cache_model(tmp_path, "vikhyatk/moondream2", {"config.json": CONFIG}, ref="2025-06-21")
    cache = scan_hub_cache(tmp_path)
    assert cache.holds(Weights("vikhyatk/moondream2", revision="2025-06-21"))
    assert cache.holds(Weights("vikhyatk/moondream2", revision=snapshot.name))


def test_a_repository_with_an_empty_snapshot_is_not_held(tmp_path: Path) -> None:
    cache_model(tmp_path, "org/empty", {})
    assert not scan_hub_cache(tmp_path).holds(Weights("org/empty"))


def test_a_cache_that_does_not_exist_holds_nothing(tmp_path: Path) -> None:
    cache = scan_hub_cache(tmp_path / "nowhere")
    assert cache.repos == {}
    found = locate(Weights("org/model"), cache)
    assert (found.kind, found.present) == ("hub", False)
    assert "org/model is not in the Hugging Face cache" in found.detail


def test_the_cache_and_offline_mode_are_huggingface_hubs_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_hub(monkeypatch, tmp_path / "hub", offline=True)
    cache_model(tmp_path / "hub", "org/model", {"config.json": CONFIG})
    assert hub_cache_dir() == tmp_path / "hub"
    assert hub_offline()
    assert scan_hub_cache().holds(Weights("org/model"))
    use_hub(monkeypatch, tmp_path / "hub", offline=False)
    assert not hub_offline()


def test_a_package_source_is_present_when_its_package_and_files_are_installed() -> None:
    here = locate(Weights("package:gpubridge/catalog", ("catalog.yaml",)), scan_hub_cache(None))
    assert (here.kind, here.present) == ("package", True)
    without = locate(Weights("package:gpubridge/catalog", ("model.gguf",)), scan_hub_cache(None))
    assert not without.present and "has no model.gguf" in without.detail
    missing = locate(Weights("package:no_such_weights_package/model"), scan_hub_cache(None))
    assert not missing.present
    assert "the package 'no_such_weights_package' that ships it is not installed" in missing.detail


def test_a_local_directory_is_present_when_it_exists(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.onnx").write_bytes(b"0123")
    cache = scan_hub_cache(tmp_path / "no-cache")
    assert locate(Weights(str(tmp_path / "model"), ("*.onnx",)), cache).present
    assert directory_size(tmp_path / "model") == 4
    gone = locate(Weights(str(tmp_path / "gone")), cache)
    assert (gone.kind, gone.present) == ("path", False)
    assert "does not exist" in gone.detail


def test_the_backend_whose_weights_load_here_is_the_first_installed_local_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(weights, "missing_modules", lambda t: ["vllm"] if t == "vllm" else [])
    vllm = BackendConfig(name="vllm", type="vllm")
    local = BackendConfig(name="local", type="transformers-llm")
    remote = BackendConfig(name="remote", type="openai")
    assert local_backend([remote, vllm, local]) == local
    assert local_backend([remote]) is None
    assert local_backend([vllm]) == vllm  # none installed: the first local one
