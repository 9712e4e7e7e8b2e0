"""Whether each service and model can run on this machine now, and why not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpubridge.catalog import Catalog
from gpubridge.catalog import availability as availability_module
from gpubridge.catalog.availability import (
    MODEL_NOT_DOWNLOADED,
    NO_BACKEND,
    RUNTIME_NOT_INSTALLED,
    Availability,
    summary,
)
from gpubridge.catalog.loader import load_catalog_file
from gpubridge.engines.registry import EngineRegistry
from gpubridge.engines.workers.pool import WorkerPool
from gpubridge.errors import ServiceUnavailable
from tests.support.gateway_app import openai_backend, write_catalog
from tests.support.hf_cache import cache_model, use_hub
from tests.support.scripted_engine import ScriptedEngine

CONFIG = b"{}"
BLIP = "Salesforce/blip-image-captioning-large"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def catalog(tmp_path: Path, edit: Any = None) -> Catalog:
    return Catalog(load_catalog_file(write_catalog(tmp_path / "catalog.yaml", edit)))


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache, offline."""
    return use_hub(monkeypatch, tmp_path / "hub", offline=True)


async def test_a_model_whose_weights_are_absent_offline_cannot_run(
    tmp_path: Path, hub: Path
) -> None:
    checks = Availability(catalog(tmp_path), EngineRegistry())
    report = await checks.report(checks.catalog.services["caption"])
    assert not report.verdict.available
    verdict = report.models["blip-large"]
    assert verdict.code == MODEL_NOT_DOWNLOADED
    assert verdict.reason is not None
    assert "model blip-large of caption is not downloaded" in verdict.reason
    assert BLIP in verdict.reason and "HF_HUB_OFFLINE=1" in verdict.reason
    assert "`gpubridge models pull blip-large`" in verdict.reason
    assert report.verdict == verdict  # the service says why its default model cannot run


async def test_the_same_model_can_run_once_cached_or_with_the_hub_in_reach(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hub: Path
) -> None:
    checks = Availability(catalog(tmp_path), EngineRegistry())
    caption = checks.catalog.services["caption"]
    cache_model(hub, BLIP, {"config.json": CONFIG})
    checks.forget()
    assert (await checks.report(caption)).models["blip-large"].available

    use_hub(monkeypatch, tmp_path / "empty-hub", offline=False)
    checks.forget()
    report = await checks.report(caption)
    assert report.verdict.available and report.models["blip-large"].available


async def test_a_service_is_available_when_one_of_its_models_is(tmp_path: Path, hub: Path) -> None:
    cache_model(hub, "BAAI/bge-m3", {"config.json": CONFIG})
    checks = Availability(catalog(tmp_path), EngineRegistry())
    report = await checks.report(checks.catalog.services["embedding-l4"])
    assert report.verdict.available
    assert report.models["bge-m3"].available
    assert report.models["bge-large-en-v1.5"].code == MODEL_NOT_DOWNLOADED


async def test_a_runtime_that_is_not_installed_is_named_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hub: Path
) -> None:
    installed = availability_module.is_installed
    monkeypatch.setattr(
        availability_module, "is_installed", lambda m: m != "diffusers" and installed(m)
    )
    checks = Availability(catalog(tmp_path), EngineRegistry())
    report = await checks.report(checks.catalog.services["image-4090"])
    assert report.verdict.code == RUNTIME_NOT_INSTALLED
    reason = report.verdict.reason or ""
    assert "diffusers-text-to-image runtime of image-4090 is not installed" in reason
    assert "diffusers" in reason and "pip install 'gpubridge[local]'" in reason
    assert {v.code for v in report.models.values()} == {RUNTIME_NOT_INSTALLED}


async def test_weights_that_are_missing_outweigh_a_runtime_that_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hub: Path
) -> None:
    installed = availability_module.is_installed
    monkeypatch.setattr(availability_module, "is_installed", lambda m: m != "vllm" and installed(m))
    checks = Availability(catalog(tmp_path), EngineRegistry())
    report = await checks.report(checks.catalog.services["llm-4090"])
    # vllm is not installed, transformers is: what the operator can do is download the model.
    assert report.models["llama-3.1-8b-instant"].code == MODEL_NOT_DOWNLOADED


async def test_when_no_backend_has_its_runtime_each_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hub: Path
) -> None:
    monkeypatch.setattr(availability_module, "is_installed", lambda m: False)
    checks = Availability(catalog(tmp_path), EngineRegistry())
    verdict = (await checks.report(checks.catalog.services["llm-4090"])).verdict
    assert verdict.code == RUNTIME_NOT_INSTALLED
    assert "install vllm" in (verdict.reason or "")
    assert "install the `local` extra" in (verdict.reason or "")


async def test_remote_backends_and_registered_factories_always_count(
    tmp_path: Path, hub: Path
) -> None:
    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        services["llm-4090"]["backends"] = [openai_backend("upstream", "http://127.0.0.1:9/v1")]
        services["caption"]["backends"] = [{"name": "scripted", "type": "scripted"}]
        services["ocr"]["backends"] = [{"name": "local-florence", "type": "florence-ocr"}]

    registry = EngineRegistry()
    registry.register("scripted", lambda config, context: ScriptedEngine(config.name))
    registry.register("florence-ocr", lambda config, context: ScriptedEngine(config.name))
    checks = Availability(catalog(tmp_path, edit), registry)
    reports = await checks.reports()
    assert reports["llm-4090"].verdict.available
    assert reports["caption"].verdict.available
    assert reports["ocr"].verdict.available  # a factory in place of the built-in one
    assert not reports["clip"].verdict.available


async def test_an_unknown_backend_type_or_no_backend_cannot_run(tmp_path: Path, hub: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["services"]["caption"]["backends"] = [{"name": "ghost", "type": "ghost"}]
        data["services"]["clip"]["backends"] = []

    checks = Availability(catalog(tmp_path, edit), EngineRegistry())
    reports = await checks.reports()
    assert reports["caption"].verdict.code == RUNTIME_NOT_INSTALLED
    assert "'ghost', which no runtime here provides" in (reports["caption"].verdict.reason or "")
    assert reports["clip"].verdict.code == NO_BACKEND
    assert reports["clip"].models["clip-vit-large-patch14"].code == NO_BACKEND


async def test_models_that_run_on_remote_workers_are_not_judged_here(
    tmp_path: Path, hub: Path
) -> None:
    registry = EngineRegistry()
    # Worker mode "remote": no worker process on this machine, and none has joined yet.
    registry.workers = WorkerPool([], default_budget_bytes=None)
    checks = Availability(catalog(tmp_path), registry)
    assert (await checks.report(checks.catalog.services["caption"])).verdict.available


async def test_admission_refuses_a_model_that_cannot_run_with_its_code(
    tmp_path: Path, hub: Path
) -> None:
    checks = Availability(catalog(tmp_path), EngineRegistry())
    caption = checks.catalog.services["caption"]
    with pytest.raises(ServiceUnavailable) as refused:
        await checks.require(caption, caption.default_model)
    assert refused.value.code == MODEL_NOT_DOWNLOADED
    assert refused.value.status == 503
    assert refused.value.details == {"model": "blip-large"}
    cache_model(hub, BLIP, {"config.json": CONFIG})
    checks.forget()
    await checks.require(caption, caption.default_model)


async def test_the_machine_is_read_again_only_after_the_ttl(tmp_path: Path, hub: Path) -> None:
    clock = Clock()
    checks = Availability(catalog(tmp_path), EngineRegistry(), ttl_s=30, clock=clock)
    caption = checks.catalog.services["caption"]
    assert not (await checks.report(caption)).verdict.available
    cache_model(hub, BLIP, {"config.json": CONFIG})
    clock.now = 29
    assert not (await checks.report(caption)).verdict.available
    clock.now = 30
    assert (await checks.report(caption)).verdict.available


async def test_a_package_source_that_is_not_installed_cannot_run(tmp_path: Path, hub: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        for model in data["services"]["embedding-l4"]["models"]:
            model["source"] = "package:no_such_weights_package/model"

    checks = Availability(catalog(tmp_path, edit), EngineRegistry())
    verdict = (await checks.report(checks.catalog.services["embedding-l4"])).verdict
    assert verdict.code == MODEL_NOT_DOWNLOADED
    assert "'no_such_weights_package' that ships it is not installed" in (verdict.reason or "")


async def test_the_summary_names_what_runs_now_and_why_the_rest_cannot(
    tmp_path: Path, hub: Path
) -> None:
    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        services["llm-4090"]["backends"] = [openai_backend("upstream", "http://127.0.0.1:9/v1")]
        services["clip"]["backends"] = []

    checks = Availability(catalog(tmp_path, edit), EngineRegistry())
    lines = summary(checks.catalog, await checks.reports())
    default_llm = checks.catalog.services["llm-4090"].default_model.id
    assert lines[0] == f"1 services ready now: llm-4090 ({default_llm})"
    weights = next(line for line in lines if "weights not downloaded" in line)
    assert "caption" in weights and "gpubridge models pull" in weights
    assert any(line.endswith("no backend configured: clip") for line in lines)
    told = {key for line in lines[1:] for key in line.split(": ", 1)[1].split(", ")}
    assert told == set(checks.catalog.services) - {"llm-4090"}  # each service told once
