"""Portraits on a tiny SDXL pipeline with a tiny IP-Adapter taking the face photo."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubridge.engines.base import ModelRef
from gpubridge.engines.diffusion.portrait import adapter_scale, create
from gpubridge.errors import InvalidInput
from tests.engines.diffusion.conftest import IP_ADAPTER_OPTIONS, assert_images, image_sizes, picture
from tests.support.engine_calls import cuda_engine, engine, media_input, request, run


def test_style_strength_lowers_the_adapter_scale() -> None:
    assert adapter_scale(0.2, 1.0) == 0.8
    assert adapter_scale(1, 0.6) == 0.0
    with pytest.raises(InvalidInput):
        adapter_scale(1.5, 1.0)


def options(base: Path) -> dict[str, object]:
    return {"base_model": str(base), "num_inference_steps": 2, **IP_ADAPTER_OPTIONS}


@pytest.mark.slow
async def test_the_face_photo_steers_the_portrait_through_the_adapter(
    tiny_sdxl_dir: Path, tiny_ip_adapter_dir: Path
) -> None:
    diffuser = engine(create, "diffusers-portrait")
    data = {"prompt": "a person as an astronaut", "width": 32, "height": 32, "seed": 2}
    face = media_input("image_url", picture(40, 40))
    kept = request(
        "photomaker",
        {**data, "style_strength": 0.0},
        media=face,
        model=ModelRef("tiny", str(tiny_ip_adapter_dir), options(tiny_sdxl_dir)),
    )
    result, events = await run(diffuser, kept)
    assert_images(result, events, [(32, 32)], steps=2)
    assert result.usage.outputs == 1
    pipe = await diffuser.pipeline(kept.model)
    assert pipe.image_encoder is not None
    free = request(
        "photomaker",
        {**data, "style_strength": 1.0},
        media=face,
        model=ModelRef("tiny", str(tiny_ip_adapter_dir), options(tiny_sdxl_dir)),
    )
    styled, _ = await run(diffuser, free)
    assert styled.output["images"][0].data != result.output["images"][0].data


@pytest.mark.slow
@pytest.mark.gpu
async def test_portraits_run_on_cuda(tiny_sdxl_dir: Path, tiny_ip_adapter_dir: Path) -> None:
    diffuser = cuda_engine(create, "diffusers-portrait")
    req = request(
        "photomaker",
        {"prompt": "a portrait", "width": 32, "height": 32, "seed": 2},
        media=media_input("image_url", picture()),
        model=ModelRef("tiny", str(tiny_ip_adapter_dir), options(tiny_sdxl_dir)),
    )
    result, _ = await run(diffuser, req)
    assert image_sizes(result) == [(32, 32)]
    await diffuser.unload()
