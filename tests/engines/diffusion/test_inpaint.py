"""Inpainting on tiny FLUX.1 Fill and SDXL inpainting pipelines."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubridge.engines.base import MediaInput, ModelRef
from gpubridge.engines.diffusion.inpaint import create
from tests.engines.diffusion.conftest import assert_images, image_sizes, picture
from tests.support.engine_calls import cuda_engine, engine, media_input, request, run

pytestmark = [pytest.mark.slow]


def files(width: int, height: int) -> list[MediaInput]:
    return [
        media_input("image_url", picture(width, height)),
        media_input("mask_url", picture(width, height, mask=True)),
    ]


async def test_flux_fill_repaints_at_the_image_size(tiny_flux_fill_dir: Path) -> None:
    diffuser = engine(create, "diffusers-inpaint")
    req = request(
        "inpaint",
        {"prompt": "a red ball", "seed": 4, "num_inference_steps": 2},
        media=files(48, 32),
        model=ModelRef(
            "tiny", str(tiny_flux_fill_dir), {"pipeline": "FluxFillPipeline", "guidance_scale": 30}
        ),
    )
    result, events = await run(diffuser, req)
    assert_images(result, events, [(48, 32)], steps=2)
    assert result.usage.outputs == 1


async def test_sdxl_inpainting_snaps_odd_sizes_to_multiples_of_16(
    tiny_sdxl_inpaint_dir: Path,
) -> None:
    diffuser = engine(create, "diffusers-inpaint")
    req = request(
        "inpaint",
        {"prompt": "a cat", "seed": 4, "num_inference_steps": 2, "num_outputs": 2},
        media=files(40, 35),
        model=tiny_sdxl_inpaint_dir,
    )
    result, events = await run(diffuser, req)
    assert image_sizes(result) == [(32, 32), (32, 32)]
    assert events.steps()[-1][0] == events.steps()[-1][1]
    assert result.usage.outputs == 2


@pytest.mark.gpu
async def test_flux_fill_runs_on_cuda(tiny_flux_fill_dir: Path) -> None:
    diffuser = cuda_engine(create, "diffusers-inpaint", dtype="bfloat16")
    req = request(
        "inpaint",
        {"prompt": "a red ball", "seed": 4, "num_inference_steps": 2},
        media=files(32, 32),
        model=ModelRef("tiny", str(tiny_flux_fill_dir), {"pipeline": "FluxFillPipeline"}),
    )
    result, events = await run(diffuser, req)
    assert image_sizes(result) == [(32, 32)]
    assert len(events.steps()) == 2
    await diffuser.unload()
