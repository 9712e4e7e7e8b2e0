"""The shared diffusion pieces that need no model."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from PIL import Image

from gpubridge.engines.base import EngineEvent
from gpubridge.engines.diffusion.common import (
    call_options,
    generation,
    generators,
    images_result,
    legacy_step_callback,
    pick_seed,
    resident_key,
    snap_size,
    step_callback,
    supported_kwargs,
    torch_dtype,
)
from gpubridge.errors import InvalidInput


def test_generation_options_do_not_change_the_resident_key() -> None:
    assert resident_key("repo", {"num_inference_steps": 4, "guidance_scale": 0}) == "repo"
    key = resident_key("repo", {"pipeline": "FluxPipeline", "num_inference_steps": 4})
    assert key == resident_key("repo", {"num_inference_steps": 50, "pipeline": "FluxPipeline"})
    assert key != resident_key("repo", {"pipeline": "FluxPipeline", "dtype": "bfloat16"})
    assert call_options({"max_sequence_length": 256, "dtype": "x"}) == {"max_sequence_length": 256}


def test_half_precision_is_a_gpu_setting() -> None:
    assert torch_dtype("bfloat16", "cpu") is torch.float32
    assert torch_dtype(None, "cpu") is torch.float32
    assert torch_dtype(None, "cuda") is torch.float16
    assert torch_dtype("bfloat16", "cuda:0") is torch.bfloat16
    assert torch_dtype("auto", "cuda") == "auto"
    with pytest.raises(ValueError):
        torch_dtype("float13", "cuda")


def test_seeds_are_validated_or_drawn_and_seed_one_generator_per_output() -> None:
    assert pick_seed(5) == 5
    assert 0 <= pick_seed(None) <= 2**32 - 1
    for bad in (-1, 2**32, True, "3"):
        with pytest.raises(InvalidInput):
            pick_seed(bad)  # type: ignore[arg-type]
    first, second = generators(9, 2)
    assert torch.equal(
        torch.randn(3, generator=second), torch.randn(3, generator=generators(10, 1)[0])
    )
    assert not torch.equal(torch.randn(3, generator=first), torch.randn(3, generator=second))


def test_inputs_fall_back_to_model_options_then_engine_defaults() -> None:
    gen = generation({"prompt": "p", "seed": 1}, {"num_inference_steps": 4}, steps=30)
    assert (gen.steps, gen.guidance_scale, gen.num_outputs, gen.output_format) == (4, 7.0, 1, "png")
    gen = generation({"prompt": "p", "num_inference_steps": 2, "guidance_scale": 0}, {})
    assert (gen.steps, gen.guidance_scale) == (2, 0.0)
    with pytest.raises(InvalidInput):
        generation({}, {})
    assert generation({}, {}, prompt_required=False).prompt == ""


def test_only_the_arguments_a_pipeline_takes_are_passed() -> None:
    class Pipe:
        def __call__(self, prompt: str, num_inference_steps: int = 1) -> None: ...

    kwargs = {"prompt": "p", "negative_prompt": "n", "num_inference_steps": None}
    assert supported_kwargs(Pipe(), kwargs) == {"prompt": "p"}


def test_step_callbacks_report_each_step_against_the_real_schedule() -> None:
    sent: list[EngineEvent] = []

    class Pipe:
        _num_timesteps = 3

    callback = step_callback(sent.append, total=6)
    for step in range(3):
        assert callback(Pipe(), step, 0, {"latents": 1}) == {"latents": 1}
    legacy = legacy_step_callback(sent.append, total=2)
    for step in (1, 2, 3):
        legacy(step, 0, None)
    pairs = [(e.data["step"], e.data["total"]) for e in sent]
    assert pairs == [(1, 3), (2, 3), (3, 3), (1, 2), (2, 2), (2, 2)]
    assert {e.data["stage"] for e in sent} == {"denoising"}


def test_results_carry_one_file_per_image_and_bill_per_output() -> None:
    images = [Image.new("RGB", (16, 8)), Image.new("RGB", (16, 8))]
    result = images_result(images, "webp", 41, 0.25)
    files: list[Any] = result.output["images"]
    assert [f.content_type for f in files] == ["image/webp", "image/webp"]
    assert [f.metadata for f in files] == [
        {"width": 16, "height": 8, "seed": 41},
        {"width": 16, "height": 8, "seed": 42},
    ]
    assert result.output["seed"] == 41
    assert (result.usage.outputs, result.usage.compute_seconds) == (2, 0.25)
    assert snap_size(40, 35) == (32, 32) and snap_size(8, 100, 8) == (8, 96)
