"""Portraits on a tiny SDXL pipeline with a tiny IP-Adapter taking the face photo."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubridge.engines.diffusion.portrait import adapter_scale, create
from gpubridge.errors import InvalidInput
from tests.engines.diffusion.conftest import (
    IP_ADAPTER_OPTIONS,
    backend,
    image_sizes,
    media,
    picture,
    request,
    run_collecting,
    steps_of,
)


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
    engine = create(*backend("diffusers-portrait"))
    data = {"prompt": "a person as an astronaut", "width": 32, "height": 32, "seed": 2}
    face = media(image_url=picture(40, 40))
    kept = request(
        "photomaker",
        tiny_ip_adapter_dir,
        {**data, "style_strength": 0.0},
        options=options(tiny_sdxl_dir),
        files=face,
    )
    result, events = await run_collecting(engine, kept)
    assert image_sizes(result) == [(32, 32)]
    assert steps_of(events) == [(1, 2), (2, 2)]
    assert result.usage.outputs == 1
    pipe = await engine.pipeline(kept.model)
    assert pipe.image_encoder is not None
    free = request(
        "photomaker",
        tiny_ip_adapter_dir,
        {**data, "style_strength": 1.0},
        options=options(tiny_sdxl_dir),
        files=face,
    )
    styled, _ = await run_collecting(engine, free)
    assert styled.output["images"][0].data != result.output["images"][0].data


@pytest.mark.slow
@pytest.mark.gpu
async def test_portraits_run_on_cuda(tiny_sdxl_dir: Path, tiny_ip_adapter_dir: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    engine = create(*backend("diffusers-portrait", device="cuda", dtype="float16"))
    req = request(
        "photomaker",
        tiny_ip_adapter_dir,
        {"prompt": "a portrait", "width": 32, "height": 32, "seed": 2},
        options=options(tiny_sdxl_dir),
        files=media(image_url=picture()),
    )
    result, _ = await run_collecting(engine, req)
    assert image_sizes(result) == [(32, 32)]
    await engine.unload()
