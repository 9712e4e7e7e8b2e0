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
from gpubridge.engines.diffusion.ad_inpaint import (
    AdInpaintEngine,
    composite,
    create,
    place_product,
)
from gpubridge.errors import InvalidInput
from tests.support.media_server import png_bytes
from tests.support.tiny_diffusion import build_tiny_sdxl
from tests.support.tiny_imaging import build_tiny_segmenter

pytestmark = pytest.mark.slow

WAIT_S = 120


@pytest.fixture(scope="module")
def ad_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a tiny SDXL inpainting pipeline, a tiny BiRefNet-shaped ONNX segmenter)."""
    sdxl = build_tiny_sdxl(tmp_path_factory.mktemp("ad-sdxl-inpaint"), inpaint=True)
    return sdxl, build_tiny_segmenter(tmp_path_factory.mktemp("ad-birefnet"))


def engine(**options: Any) -> AdInpaintEngine:
    config = BackendConfig(name="ads", type="ad-inpaint", options={"device": "cpu", **options})
    return create(config, EngineContext())


def request(models: tuple[Path, Path], **inputs: Any) -> EngineRequest:
    sdxl, segmenter = models
    model = ModelRef("sdxl-inpainting", str(sdxl), {"background_removal": str(segmenter)})
    media = {"image_url": MediaInput("image_url", png_bytes(32, 32), "image/png")}
    data = {"prompt": "on a marble counter", "num_inference_steps": 2, "seed": 5, **inputs}
    data.setdefault("width", 48)
    data.setdefault("height", 32)
    return EngineRequest("job-1", "ad-inpaint", model, data, media)


async def run(ads: AdInpaintEngine, req: EngineRequest) -> tuple[EngineResult, list[EngineEvent]]:
    events: list[EngineEvent] = []

    async def emit(event: EngineEvent) -> None:
        events.append(event)

    try:
        async with asyncio.timeout(WAIT_S):
            result = await ads.run(req, emit)
        await asyncio.sleep(0)
        return result, events
    finally:
        await ads.unload()


def product_and_mask() -> tuple[Image.Image, Image.Image]:
    image = Image.new("RGB", (40, 20), (10, 20, 30))
    image.paste((250, 0, 0), (10, 5, 30, 15))
    mask = Image.new("L", (40, 20), 0)
    mask.paste(255, (10, 5, 30, 15))
    return image, mask


def test_the_product_is_scaled_into_its_share_of_the_frame() -> None:
    image, mask = product_and_mask()
    layout = place_product(image, mask, (100, 100), 0.5)
    assert layout.product.size == (50, 25)
    assert layout.position == (25, 37)
    assert layout.canvas.getpixel((50, 50)) == (250, 0, 0)
    assert layout.repaint.getpixel((50, 50)) == 0
    assert layout.repaint.getpixel((5, 5)) == 255


def test_the_original_product_pixels_are_put_back() -> None:
    image, mask = product_and_mask()
    layout = place_product(image, mask, (64, 64), 0.8)
    painted = Image.new("RGB", (64, 64), (0, 255, 0))
    result = composite(painted, layout)
    assert result.getpixel((32, 32)) == (250, 0, 0)
    assert result.getpixel((1, 1)) == (0, 255, 0)


async def test_an_ad_is_painted_around_the_product(ad_models: tuple[Path, Path]) -> None:
    result, events = await run(engine(), request(ad_models, product_scale=0.5))
    images = result.output["images"]
    assert len(images) == 1
    picture = Image.open(io.BytesIO(images[0].data))
    assert picture.size == (48, 32)
    assert result.output["seed"] == 5
    assert result.usage.outputs == 1
    assert result.usage.compute_seconds > 0
    assert any(e.data.get("stage") == "denoising" for e in events)
    loaded = [e.data["model"] for e in events if e.data.get("stage") == "model_loaded"]
    assert loaded == ["sdxl-inpainting", "background-removal"]


async def test_a_product_scale_out_of_range_is_invalid_input(ad_models: tuple[Path, Path]) -> None:
    with pytest.raises(InvalidInput):
        await run(engine(), request(ad_models, product_scale=3))


@pytest.mark.gpu
async def test_an_ad_is_painted_on_cuda(ad_models: tuple[Path, Path]) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    result, _ = await run(engine(device="cuda"), request(ad_models))
    assert len(result.output["images"]) == 1
