from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gpubridge.engines.base import EngineRequest, EngineResult, ModelRef
from gpubridge.engines.diffusion.sticker import StickerEngine, create, outline, sticker_prompt
from tests.support.engine_calls import Events, engine, media_input, request, run
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow


@pytest.fixture
def sticker_models(tiny_sdxl_dir: Path, tiny_segmenter_dir: Path) -> tuple[Path, Path]:
    """(a tiny SDXL pipeline, a tiny BiRefNet-shaped ONNX segmenter)."""
    return tiny_sdxl_dir, tiny_segmenter_dir


def stickers(**options: Any) -> StickerEngine:
    return engine(create, "sticker", name="sticker", **{"device": "cpu", **options})


def sticker_request(models: tuple[Path, Path], **inputs: Any) -> EngineRequest:
    sdxl, segmenter = models
    options = {"background_removal": str(segmenter), "trigger_words": "Stickers, Sticker"}
    data = {"prompt": "a red fox", "num_inference_steps": 2, "seed": 3, **inputs}
    return request(
        "sticker",
        data,
        media=media_input("image_url", png_bytes(32, 32)),
        model=ModelRef("sticker-sdxl", str(sdxl), options),
    )


async def made(sticker: StickerEngine, req: EngineRequest) -> tuple[EngineResult, Events]:
    return await run(sticker, req, unload=True)


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
    result, events = await made(stickers(), sticker_request(sticker_models, num_outputs=2))
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
    steps = events.progress("denoising")
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
    media = media_input("image_url", png_bytes(96, 64))
    # A seed of its own: with another, the tiny segmenter may keep the whole picture, and a
    # WebP whose every pixel is opaque is written without an alpha channel.
    data = {"prompt": "a fox", "num_inference_steps": 2, "output_format": "webp", "seed": 3}
    req = request("sticker", data, media=media, model=model, job_id="job-2")
    result, _ = await made(stickers(), req)
    file = result.output["images"][0]
    assert file.content_type == "image/webp"
    picture = Image.open(io.BytesIO(file.data))
    assert (picture.mode, picture.size) == ("RGBA", (32, 16))
    assert picture.getextrema()[3][0] < 255  # some of it is see-through


@pytest.mark.gpu
async def test_a_sticker_is_made_on_cuda(sticker_models: tuple[Path, Path]) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    result, _ = await made(stickers(device="cuda"), sticker_request(sticker_models))
    assert len(result.output["images"]) == 1
