"""Tiny diffusion pipelines built once per test run, and helpers to drive the engines."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.base import (
    BackendConfig,
    EngineContext,
    EngineEvent,
    EngineRequest,
    EngineResult,
    MediaInput,
    ModelRef,
)
from tests.support import tiny_diffusion


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_diffusion.build_tiny_sdxl(tmp_path_factory.mktemp("sdxl"))


@pytest.fixture(scope="session")
def tiny_sdxl_inpaint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_diffusion.build_tiny_sdxl(tmp_path_factory.mktemp("sdxl-inpaint"), inpaint=True)


@pytest.fixture(scope="session")
def tiny_lightning_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_diffusion.build_tiny_lightning(tmp_path_factory.mktemp("lightning"))


@pytest.fixture(scope="session")
def tiny_controlnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_diffusion.build_tiny_sdxl_controlnet(tmp_path_factory.mktemp("controlnet"))


@pytest.fixture(scope="session")
def tiny_depth_controlnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_diffusion.build_tiny_sdxl_controlnet(tmp_path_factory.mktemp("cn-depth"), seed=1)


@pytest.fixture(scope="session")
def tiny_depth_estimator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_diffusion.build_tiny_depth_estimator(tmp_path_factory.mktemp("depth"))


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_diffusion.build_tiny_flux(tmp_path_factory.mktemp("flux"))


@pytest.fixture(scope="session")
def tiny_flux_fill_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_diffusion.build_tiny_flux(tmp_path_factory.mktemp("flux-fill"), fill=True)


@pytest.fixture(scope="session")
def tiny_sd3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_diffusion.build_tiny_sd3(tmp_path_factory.mktemp("sd3"))


@pytest.fixture(scope="session")
def tiny_variation_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_diffusion.build_tiny_image_variation(tmp_path_factory.mktemp("variation"))


@pytest.fixture(scope="session")
def tiny_ip_adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_diffusion.build_tiny_ip_adapter(tmp_path_factory.mktemp("ip-adapter"))


IP_ADAPTER_OPTIONS = {
    "subfolder": "sdxl_models",
    "weight_name": "tiny_ip_adapter.safetensors",
    "image_encoder_folder": "sdxl_models/image_encoder",
}


def picture(width: int = 32, height: int = 32, *, mask: bool = False) -> bytes:
    """A PNG: a dark square on a light ground (or a white-in-black mask of its centre)."""
    from PIL import Image, ImageDraw

    image = Image.new("L" if mask else "RGB", (width, height), 0 if mask else (230, 220, 200))
    box = (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    ImageDraw.Draw(image).rectangle(box, fill=255 if mask else (20, 40, 90))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def media(**files: bytes) -> dict[str, MediaInput]:
    return {name: MediaInput(name, data, "image/png") for name, data in files.items()}


def request(
    service: str,
    source: Path | str,
    data: dict[str, Any],
    *,
    options: dict[str, Any] | None = None,
    files: dict[str, MediaInput] | None = None,
    model_id: str = "tiny",
) -> EngineRequest:
    return EngineRequest(
        job_id="job-1",
        service=service,
        model=ModelRef(model_id, str(source), options or {}),
        input=data,
        media=files or {},
    )


def backend(type_key: str, **options: Any) -> tuple[BackendConfig, EngineContext]:
    return BackendConfig(name=f"local-{type_key}", type=type_key, options=options), EngineContext()


async def run_collecting(engine: Any, req: EngineRequest) -> tuple[EngineResult, list[EngineEvent]]:
    """Run ``req`` and return the result and the events the engine emitted."""
    events: list[EngineEvent] = []

    async def emit(event: EngineEvent) -> None:
        events.append(event)

    result = await engine.run(req, emit)
    return result, events


def steps_of(events: list[EngineEvent]) -> list[tuple[int, int]]:
    """``(step, total)`` of each denoising progress event."""
    return [
        (e.data["step"], e.data["total"])
        for e in events
        if e.kind == "progress" and e.data.get("stage") == "denoising"
    ]


def image_sizes(result: EngineResult) -> list[tuple[int, int]]:
    from PIL import Image

    return [Image.open(io.BytesIO(f.data)).size for f in result.output["images"]]
