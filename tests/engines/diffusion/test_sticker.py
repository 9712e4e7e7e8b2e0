from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gpubridge.engines.base import (
    BackendConfig,
    EngineContext,
    EngineEvent,
    EngineRequest,
    EngineResult,
    MediaInput,
    ModelRef,
)
from gpubridge.engines.diffusion.sticker import StickerEngine, create, outline, sticker_prompt
from tests.support.media_server import png_bytes
from tests.support.tiny_diffusion import build_tiny_sdxl
from tests.support.tiny_imaging import build_tiny_segmenter

pytestmark = pytest.mark.slow

WAIT_S = 120


@pytest.fixture(scope="module")
def sticker_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a tiny SDXL pipeline, a tiny BiRefNet-shaped ONNX segmenter)."""
    sdxl = build_tiny_sdxl(tmp_path_factory.mktemp("sticker-sdxl"))
    return sdxl, build_tiny_segmenter(tmp_path_factory.mktemp("sticker-birefnet"))


def engine(**options: Any) -> StickerEngine:
    config = BackendConfig(name="sticker", type="sticker", options={"device": "cpu", **options})
    return create(config, EngineContext())


def request(models: tuple[Path, Path], **inputs: Any) -> EngineRequest:
    sdxl, segmenter = models
    options = {"background_removal": str(segmenter), "trigger_words": "Stickers, Sticker"}
    model = ModelRef("sticker-sdxl", str(sdxl), options)
    media = {"image_url": MediaInput("image_url", png_bytes(32, 32), "image/png")}
    data = {"prompt": "a red fox", "num_inference_steps": 2, "seed": 3, **inputs}
    return EngineRequest("job-1", "sticker", model, data, media)


async def run(sticker: StickerEngine, req: EngineRequest) -> tuple[EngineResult, list[EngineEvent]]:
    events: list[EngineEvent] = []

    async def emit(event: EngineEvent) -> None:
        events.append(event)

    try:
        async with asyncio.timeout(WAIT_S):
            result = await sticker.run(req, emit)
        await asyncio.sleep(0)
        return result, events
    finally:
        await sticker.unload()


def test_the_prompt_is_styled_as_a_sticker() -> None:
    prompt = sticker_prompt("a cat", {"trigger_words": "Stickers"})
    assert prompt.startswith("Stickers, a cat, die-cut sticker")


def test_the_outline_is_opaque_white_around_the_subject() -> None:
    image = Image.new("RGB", (40, 40), (200, 10, 10))
    mask = Image.new("L", (40, 40), 0)
    mask.paste(255, (15, 15, 25, 25))
    sticker = outline(image, mask, ratio=0.1)
    assert sticker.mode == "RGBA"
    assert sticker.getpixel((20, 20)) == (200, 10, 10, 255)
    border, outside = sticker.getpixel((13, 20)), sticker.getpixel((2, 2))
    assert isinstance(border, tuple) and isinstance(outside, tuple)
    assert border[:3] == (255, 255, 255)
    assert border[3] > 200
    assert outside[3] == 0


async def test_a_sticker_is_a_transparent_png_of_the_image(
    sticker_models: tuple[Path, Path],
) -> None:
    result, events = await run(engine(), request(sticker_models, num_outputs=2))
    images = result.output["images"]
    assert len(images) == 2
    assert result.output["seed"] == 3
    for file in images:
        assert file.content_type == "image/png"
        picture = Image.open(io.BytesIO(file.data))
        assert picture.mode == "RGBA"
        assert picture.size == (32, 32)
    assert result.usage.outputs == 2
    assert result.usage.compute_seconds > 0
    steps = [e.data for e in events if e.data.get("stage") == "denoising"]
    assert steps and steps[-1]["step"] == steps[-1]["total"]
    loaded = [e.data["model"] for e in events if e.data.get("stage") == "model_loaded"]
    assert loaded == ["sticker-sdxl", "background-removal"]


async def test_a_webp_sticker_keeps_its_alpha_and_large_inputs_shrink(
    sticker_models: tuple[Path, Path],
) -> None:
    sdxl, segmenter = sticker_models
    model = ModelRef(
        "sticker-sdxl", str(sdxl), {"background_removal": str(segmenter), "max_side": 32}
    )
    media = {"image_url": MediaInput("image_url", png_bytes(96, 64), "image/png")}
    data = {"prompt": "a fox", "num_inference_steps": 2, "output_format": "webp"}
    result, _ = await run(engine(), EngineRequest("job-2", "sticker", model, data, media))
    file = result.output["images"][0]
    assert file.content_type == "image/webp"
    picture = Image.open(io.BytesIO(file.data))
    assert (picture.mode, picture.size) == ("RGBA", (32, 16))


@pytest.mark.gpu
async def test_a_sticker_is_made_on_cuda(sticker_models: tuple[Path, Path]) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    result, _ = await run(engine(device="cuda"), request(sticker_models))
    assert len(result.output["images"]) == 1
