"""Inpainting on tiny FLUX.1 Fill and SDXL inpainting pipelines."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubridge.engines.base import MediaInput
from gpubridge.engines.diffusion.inpaint import create
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


def files(width: int, height: int) -> dict[str, MediaInput]:
    return media(image_url=picture(width, height), mask_url=picture(width, height, mask=True))


async def test_flux_fill_repaints_at_the_image_size(tiny_flux_fill_dir: Path) -> None:
    engine = create(*backend("diffusers-inpaint"))
    req = request(
        "inpaint",
        tiny_flux_fill_dir,
        {"prompt": "a red ball", "seed": 4, "num_inference_steps": 2},
        options={"pipeline": "FluxFillPipeline", "guidance_scale": 30},
        files=files(48, 32),
    )
    result, events = await run_collecting(engine, req)
    assert image_sizes(result) == [(48, 32)]
    assert steps_of(events) == [(1, 2), (2, 2)]
    assert result.usage.outputs == 1


async def test_sdxl_inpainting_snaps_odd_sizes_to_multiples_of_16(
    tiny_sdxl_inpaint_dir: Path,
) -> None:
    engine = create(*backend("diffusers-inpaint"))
    req = request(
        "inpaint",
        tiny_sdxl_inpaint_dir,
        {"prompt": "a cat", "seed": 4, "num_inference_steps": 2, "num_outputs": 2},
        files=files(40, 35),
    )
    result, events = await run_collecting(engine, req)
    assert image_sizes(result) == [(32, 32), (32, 32)]
    assert steps_of(events)[-1][0] == steps_of(events)[-1][1]
    assert result.usage.outputs == 2


@pytest.mark.gpu
async def test_flux_fill_runs_on_cuda(tiny_flux_fill_dir: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    engine = create(*backend("diffusers-inpaint", device="cuda", dtype="bfloat16"))
    req = request(
        "inpaint",
        tiny_flux_fill_dir,
        {"prompt": "a red ball", "seed": 4, "num_inference_steps": 2},
        options={"pipeline": "FluxFillPipeline"},
        files=files(32, 32),
    )
    result, events = await run_collecting(engine, req)
    assert image_sizes(result) == [(32, 32)]
    assert len(steps_of(events)) == 2
    await engine.unload()
