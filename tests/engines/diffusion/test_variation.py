"""Image variations on a tiny Stable Diffusion image-variation pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubridge.engines.diffusion.variation import create
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


async def test_variations_need_no_prompt_and_are_reproducible(tiny_variation_dir: Path) -> None:
    engine = create(*backend("diffusers-image-variation"))
    req = request(
        "image-variation",
        tiny_variation_dir,
        {"num_outputs": 2, "num_inference_steps": 2, "seed": 11},
        files=media(image_url=picture(40, 40)),
    )
    result, events = await run_collecting(engine, req)
    again, _ = await run_collecting(engine, req)
    assert image_sizes(result) == [(32, 32), (32, 32)]
    assert steps_of(events) == [(1, 2), (2, 2)]
    assert result.usage.outputs == 2
    assert [f.data for f in result.output["images"]] == [f.data for f in again.output["images"]]


@pytest.mark.gpu
async def test_variations_run_on_cuda(tiny_variation_dir: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    engine = create(*backend("diffusers-image-variation", device="cuda", dtype="float16"))
    req = request(
        "image-variation",
        tiny_variation_dir,
        {"num_inference_steps": 2, "seed": 1},
        files=media(image_url=picture()),
    )
    result, _ = await run_collecting(engine, req)
    assert image_sizes(result) == [(32, 32)]
    await engine.unload()
