"""Image-to-image on a tiny SDXL pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubridge.engines.base import ModelRef
from gpubridge.engines.diffusion.img2img import create
from gpubridge.errors import InvalidInput
from tests.engines.diffusion.conftest import assert_images, image_sizes, picture
from tests.support.engine_calls import engine, media_input, request, run

pytestmark = [pytest.mark.slow]


async def test_strength_shortens_the_schedule_and_the_image_keeps_its_size(
    tiny_sdxl_dir: Path,
) -> None:
    diffuser = engine(create, "diffusers-img2img")
    req = request(
        "img2img",
        {
            "prompt": "a painting",
            "strength": 0.5,
            "num_inference_steps": 4,
            "seed": 1,
            "num_outputs": 2,
        },
        media=media_input("image_url", picture(48, 32)),
        model=ModelRef(
            "tiny", str(tiny_sdxl_dir), {"pipeline": "StableDiffusionXLImg2ImgPipeline"}
        ),
    )
    result, events = await run(diffuser, req)
    assert_images(result, events, [(48, 32), (48, 32)], steps=2)
    assert result.usage.outputs == 2 and result.usage.compute_seconds > 0


async def test_the_auto_pipeline_is_the_default_and_bad_input_is_rejected(
    tiny_sdxl_dir: Path,
) -> None:
    diffuser = engine(create, "diffusers-img2img")
    good = request(
        "img2img",
        {"prompt": "x", "strength": 1.0, "num_inference_steps": 1, "seed": 3},
        media=media_input("image_url", picture(32, 32)),
        model=tiny_sdxl_dir,
    )
    result, _ = await run(diffuser, good)
    assert image_sizes(result) == [(32, 32)]
    with pytest.raises(InvalidInput):
        await run(diffuser, request("img2img", {"prompt": "x"}, model=tiny_sdxl_dir))
    not_an_image = request(
        "img2img",
        {"prompt": "x"},
        media=media_input("image_url", b"not a png"),
        model=tiny_sdxl_dir,
    )
    with pytest.raises(InvalidInput):
        await run(diffuser, not_an_image)
