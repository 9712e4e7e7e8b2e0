"""ControlNet on a tiny SDXL pipeline with a tiny ControlNet; Canny maps from OpenCV."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpubridge.engines.base import ModelRef
from gpubridge.engines.diffusion.controlnet import canny_map, create
from gpubridge.errors import InvalidInput
from tests.engines.diffusion.conftest import assert_images, image_sizes, picture
from tests.support.engine_calls import cuda_engine, engine, media_input, request, run


def test_canny_map_marks_the_edges_of_a_square() -> None:
    image = Image.new("RGB", (32, 32), (255, 255, 255))
    image.paste((0, 0, 0), (8, 8, 24, 24))
    edges = np.asarray(canny_map(image))
    assert edges.shape == (32, 32, 3)
    assert edges[8, 8:24, 0].max() == 255  # the square's top edge
    assert edges[16, 16, 0] == 0 and edges[2, 2, 0] == 0  # inside and outside are flat


def options(base: Path) -> dict[str, object]:
    return {"base_model": str(base), "num_inference_steps": 2}


@pytest.mark.slow
async def test_controlnet_follows_the_reference_at_its_size(
    tiny_sdxl_dir: Path, tiny_controlnet_dir: Path
) -> None:
    diffuser = engine(create, "diffusers-controlnet")
    req = request(
        "controlnet",
        {"prompt": "a house", "seed": 9, "controlnet_conditioning_scale": 0.5, "num_outputs": 2},
        media=media_input("image_url", picture(32, 48)),
        model=ModelRef("tiny", str(tiny_controlnet_dir), options(tiny_sdxl_dir)),
    )
    result, events = await run(diffuser, req)
    assert_images(result, events, [(32, 48), (32, 48)], steps=2)
    assert result.usage.outputs == 2
    assert result.output["control_type"] == "canny"
    with pytest.raises(InvalidInput):
        await run(
            diffuser,
            request(
                "controlnet",
                {"prompt": "x", "control_type": "depth"},
                media=media_input("image_url", picture()),
                model=ModelRef("tiny", str(tiny_controlnet_dir), options(tiny_sdxl_dir)),
            ),
        )


@pytest.mark.slow
async def test_depth_control_uses_the_depth_estimator_and_its_own_controlnet(
    tiny_sdxl_dir: Path,
    tiny_controlnet_dir: Path,
    tiny_depth_controlnet_dir: Path,
    tiny_depth_estimator_dir: Path,
) -> None:
    from gpubridge.engines.diffusion.annotators import depth_map, load_depth_estimator

    estimator = load_depth_estimator(str(tiny_depth_estimator_dir), "cpu")
    depth = np.asarray(depth_map(estimator, Image.open(io.BytesIO(picture(48, 32)))))
    assert depth.shape == (32, 48, 3) and depth.min() == 0 and depth.max() == 255

    diffuser = engine(create, "diffusers-controlnet")
    model_options = {
        **options(tiny_sdxl_dir),
        "controlnets": {"depth": str(tiny_depth_controlnet_dir)},
        "annotators": {"depth": str(tiny_depth_estimator_dir)},
    }
    data = {"prompt": "a room", "seed": 3, "num_inference_steps": 1}
    files = media_input("image_url", picture(32, 32))
    depth_job = request(
        "controlnet",
        {**data, "control_type": "depth"},
        media=files,
        model=ModelRef("tiny", str(tiny_controlnet_dir), model_options),
    )
    result, events = await run(diffuser, depth_job)
    assert image_sizes(result) == [(32, 32)]
    assert result.output["control_type"] == "depth"
    assert events.steps() == [(1, 1)]
    loaded = [e.data["model"] for e in events if e.data.get("stage") == "model_loaded"]
    assert loaded == ["depth annotator", "tiny:depth"]
    canny_job = request(
        "controlnet",
        data,
        media=files,
        model=ModelRef("tiny", str(tiny_controlnet_dir), model_options),
    )
    edges, _ = await run(diffuser, canny_job)
    assert edges.output["control_type"] == "canny"
    assert edges.output["images"][0].data != result.output["images"][0].data


@pytest.mark.slow
@pytest.mark.gpu
async def test_controlnet_runs_on_cuda(tiny_sdxl_dir: Path, tiny_controlnet_dir: Path) -> None:
    diffuser = cuda_engine(create, "diffusers-controlnet")
    req = request(
        "controlnet",
        {"prompt": "a house", "seed": 9},
        media=media_input("image_url", picture()),
        model=ModelRef("tiny", str(tiny_controlnet_dir), options(tiny_sdxl_dir)),
    )
    result, _ = await run(diffuser, req)
    assert image_sizes(result) == [(32, 32)]
    await diffuser.unload()
