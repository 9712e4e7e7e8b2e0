"""Image variations on a tiny Stable Diffusion image-variation pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubridge.engines.diffusion.variation import create
from tests.engines.diffusion.conftest import image_sizes, picture
from tests.support.engine_calls import cuda_engine, engine, media_input, request, run

pytestmark = [pytest.mark.slow]


async def test_variations_need_no_prompt_and_are_reproducible(tiny_variation_dir: Path) -> None:
    diffuser = engine(create, "diffusers-image-variation")
    req = request(
        "image-variation",
        {"num_outputs": 2, "num_inference_steps": 2, "seed": 11},
        media=media_input("image_url", picture(40, 40)),
        model=tiny_variation_dir,
    )
    result, events = await run(diffuser, req)
    again, _ = await run(diffuser, req)
    assert image_sizes(result) == [(32, 32), (32, 32)]
    assert events.steps() == [(1, 2), (2, 2)]
    assert result.usage.outputs == 2
    assert [f.data for f in result.output["images"]] == [f.data for f in again.output["images"]]


@pytest.mark.gpu
async def test_variations_run_on_cuda(tiny_variation_dir: Path) -> None:
    diffuser = cuda_engine(create, "diffusers-image-variation")
    req = request(
        "image-variation",
        {"num_inference_steps": 2, "seed": 1},
        media=media_input("image_url", picture()),
        model=tiny_variation_dir,
    )
    result, _ = await run(diffuser, req)
    assert image_sizes(result) == [(32, 32)]
    await diffuser.unload()
