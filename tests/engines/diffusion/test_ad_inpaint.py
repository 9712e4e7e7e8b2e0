from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gpubridge.engines.base import EngineRequest, EngineResult, ModelRef
from gpubridge.engines.diffusion.ad_inpaint import (
    AdInpaintEngine,
    composite,
    create,
    place_product,
)
from gpubridge.errors import InvalidInput
from tests.support.engine_calls import Events, engine, media_input, request, run
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow


@pytest.fixture
def ad_models(tiny_sdxl_inpaint_dir: Path, tiny_segmenter_dir: Path) -> tuple[Path, Path]:
    """(a tiny SDXL inpainting pipeline, a tiny BiRefNet-shaped ONNX segmenter)."""
    return tiny_sdxl_inpaint_dir, tiny_segmenter_dir


def painter(**options: Any) -> AdInpaintEngine:
    return engine(create, "ad-inpaint", name="ads", **{"device": "cpu", **options})


def ad_request(models: tuple[Path, Path], **inputs: Any) -> EngineRequest:
    sdxl, segmenter = models
    data = {"prompt": "on a marble counter", "num_inference_steps": 2, "seed": 5, **inputs}
    data.setdefault("width", 48)
    data.setdefault("height", 32)
    return request(
        "ad-inpaint",
        data,
        media=media_input("image_url", png_bytes(32, 32)),
        model=ModelRef("sdxl-inpainting", str(sdxl), {"background_removal": str(segmenter)}),
    )


async def painted(ads: AdInpaintEngine, req: EngineRequest) -> tuple[EngineResult, Events]:
    return await run(ads, req, unload=True)


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
    result, events = await painted(painter(), ad_request(ad_models, product_scale=0.5))
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
        await painted(painter(), ad_request(ad_models, product_scale=3))


@pytest.mark.gpu
async def test_an_ad_is_painted_on_cuda(ad_models: tuple[Path, Path]) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    result, _ = await painted(painter(device="cuda"), ad_request(ad_models))
    assert len(result.output["images"]) == 1
