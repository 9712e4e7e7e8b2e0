"""Image-to-image on a tiny SDXL pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubridge.engines.diffusion.img2img import create
from gpubridge.errors import InvalidInput
from tests.engines.diffusion.conftest import (
    backend,
    image_sizes,
    media,
    picture,
    request,
    run_collecting,
    steps_of,
)

pytestmark = [pytest.mark.slow]


async def test_strength_shortens_the_schedule_and_the_image_keeps_its_size(
    tiny_sdxl_dir: Path,
) -> None:
    engine = create(*backend("diffusers-img2img"))
    req = request(
        "img2img",
        tiny_sdxl_dir,
        {
            "prompt": "a painting",
            "strength": 0.5,
            "num_inference_steps": 4,
            "seed": 1,
            "num_outputs": 2,
        },
        options={"pipeline": "StableDiffusionXLImg2ImgPipeline"},
        files=media(image_url=picture(48, 32)),
    )
    result, events = await run_collecting(engine, req)
    assert image_sizes(result) == [(48, 32), (48, 32)]
    assert steps_of(events) == [(1, 2), (2, 2)]
    assert result.usage.outputs == 2 and result.usage.compute_seconds > 0


async def test_the_auto_pipeline_is_the_default_and_bad_input_is_rejected(
    tiny_sdxl_dir: Path,
) -> None:
    engine = create(*backend("diffusers-img2img"))
    good = request(
        "img2img",
        tiny_sdxl_dir,
        {"prompt": "x", "strength": 1.0, "num_inference_steps": 1, "seed": 3},
        files=media(image_url=picture(32, 32)),
    )
    result, _ = await run_collecting(engine, good)
    assert image_sizes(result) == [(32, 32)]
    with pytest.raises(InvalidInput):
        await run_collecting(engine, request("img2img", tiny_sdxl_dir, {"prompt": "x"}))
    not_an_image = request(
        "img2img", tiny_sdxl_dir, {"prompt": "x"}, files=media(image_url=b"not a png")
    )
    with pytest.raises(InvalidInput):
        await run_collecting(engine, not_an_image)
