"""Text-to-image on tiny SDXL, FLUX.1, SD3 and SDXL-Lightning-style pipelines."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gpubridge.engines.base import EngineRequest, EngineResult, ModelRef, OutputFile
from gpubridge.engines.diffusion.text_to_image import create
from tests.engines.diffusion.conftest import assert_images
from tests.support.engine_calls import cuda_engine, engine, request, run

pytestmark = [pytest.mark.slow]


def txt2img(model: ModelRef | Path, prompt: str, **data: Any) -> EngineRequest:
    """A request for 32x32 images of ``prompt``; ``data`` adds to or overrides the input."""
    return request("image-4090", {"prompt": prompt, "width": 32, "height": 32, **data}, model=model)


def pixels(result: EngineResult) -> list[np.ndarray]:
    return [
        np.asarray(Image.open(io.BytesIO(f.data)), dtype=np.int16) for f in result.output["images"]
    ]


async def test_sdxl_makes_the_asked_number_of_pngs_with_one_progress_event_per_step(
    tiny_sdxl_dir: Path,
) -> None:
    diffuser = engine(create, "diffusers-text-to-image")
    req = txt2img(
        tiny_sdxl_dir,
        "a red fox",
        num_outputs=2,
        seed=7,
        num_inference_steps=2,
        negative_prompt="blurry",
    )
    result, events = await run(diffuser, req)
    files = result.output["images"]
    assert len(files) == 2 and all(isinstance(f, OutputFile) for f in files)
    assert {f.content_type for f in files} == {"image/png"}
    assert_images(result, events, [(32, 32), (32, 32)], steps=2)
    assert [f.metadata["seed"] for f in files] == [7, 8]
    assert result.output["seed"] == 7
    assert result.usage.outputs == 2 and result.usage.compute_seconds > 0
    assert [e.data["stage"] for e in events[:2]] == ["loading_model", "model_loaded"]


async def test_a_seed_reproduces_its_images_and_each_output_alone(tiny_sdxl_dir: Path) -> None:
    diffuser = engine(create, "diffusers-text-to-image")
    pair, _ = await run(diffuser, txt2img(tiny_sdxl_dir, "a cat", seed=3, num_outputs=2))
    again, _ = await run(diffuser, txt2img(tiny_sdxl_dir, "a cat", seed=3, num_outputs=2))
    second, _ = await run(diffuser, txt2img(tiny_sdxl_dir, "a cat", seed=4))
    first = pixels(pair)
    assert all(np.array_equal(a, b) for a, b in zip(first, pixels(again), strict=True))
    # the same noise; batched and single runs differ only by float rounding
    assert np.abs(first[1] - pixels(second)[0]).max() <= 2
    assert not np.array_equal(first[0], first[1])


async def test_flux_runs_from_the_pipeline_option_and_honours_output_format(
    tiny_flux_dir: Path,
) -> None:
    diffuser = engine(create, "diffusers-text-to-image")
    options = {
        "pipeline": "FluxPipeline",
        "num_inference_steps": 2,
        "guidance_scale": 0.0,
        "max_sequence_length": 16,
    }
    req = txt2img(
        ModelRef("tiny", str(tiny_flux_dir), options),
        "a city at night",
        height=48,
        seed=1,
        output_format="jpeg",
        negative_prompt="ignored by flux",
    )
    result, events = await run(diffuser, req)
    assert_images(result, events, [(32, 48)], steps=2)
    assert result.output["images"][0].content_type == "image/jpeg"
    assert result.usage.outputs == 1


async def test_sd3_runs_through_the_auto_pipeline(tiny_sd3_dir: Path) -> None:
    diffuser = engine(create, "diffusers-text-to-image")
    req = txt2img(tiny_sd3_dir, "a blue sky", seed=2, num_inference_steps=1)
    result, events = await run(diffuser, req)
    assert_images(result, events, [(32, 32)], steps=1)


async def test_lightning_unet_file_is_loaded_onto_the_base_with_trailing_euler(
    tiny_sdxl_dir: Path, tiny_lightning_dir: Path
) -> None:
    import torch
    from safetensors.torch import load_file

    diffuser = engine(create, "diffusers-text-to-image")
    model_options = {
        "pipeline": "StableDiffusionXLPipeline",
        "base_model": str(tiny_sdxl_dir),
        "unet_file": "tiny_lightning_unet.safetensors",
        "num_inference_steps": 2,
        "guidance_scale": 0.0,
    }
    req = txt2img(ModelRef("tiny", str(tiny_lightning_dir), model_options), "a dog", seed=5)
    result, events = await run(diffuser, req)
    assert_images(result, events, [(32, 32)], steps=2)
    pipe = await diffuser.pipeline(req.model)
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    saved = load_file(str(tiny_lightning_dir / "tiny_lightning_unet.safetensors"))
    name, tensor = next(iter(saved.items()))
    assert torch.equal(pipe.unet.state_dict()[name], tensor)


async def test_models_sharing_weights_share_one_resident_pipeline(tiny_sdxl_dir: Path) -> None:
    diffuser = engine(create, "diffusers-text-to-image")
    fast = request(
        "image-4090",
        {"prompt": "x"},
        model=ModelRef("tiny", str(tiny_sdxl_dir), {"num_inference_steps": 1}),
    )
    slow = request(
        "image-4090",
        {"prompt": "x"},
        model=ModelRef("tiny", str(tiny_sdxl_dir), {"num_inference_steps": 9}),
    )
    assert await diffuser.pipeline(fast.model) is await diffuser.pipeline(slow.model)
    await diffuser.unload()


@pytest.mark.gpu
async def test_sdxl_and_flux_run_on_cuda(tiny_sdxl_dir: Path, tiny_flux_dir: Path) -> None:
    diffuser = cuda_engine(create, "diffusers-text-to-image")
    for source, pipeline in (
        (tiny_sdxl_dir, "StableDiffusionXLPipeline"),
        (tiny_flux_dir, "FluxPipeline"),
    ):
        model = ModelRef("tiny", str(source), {"pipeline": pipeline})
        req = txt2img(model, "a fox", seed=1, num_inference_steps=2)
        result, events = await run(diffuser, req)
        assert_images(result, events, [(32, 32)], steps=2)
        assert (await diffuser.pipeline(req.model)).device.type == "cuda"
    await diffuser.unload()
