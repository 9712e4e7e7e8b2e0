"""Tiny diffusion pipelines built once per test run, and pictures and readers for the tests."""

from __future__ import annotations

import io

from gpubridge.engines.base import EngineResult
from tests.support import tiny_diffusion
from tests.support.engine_calls import Events, model_dir_fixture
from tests.support.tiny_imaging import build_tiny_segmenter

tiny_sdxl_dir = model_dir_fixture(tiny_diffusion.build_tiny_sdxl, "sdxl")
tiny_sdxl_inpaint_dir = model_dir_fixture(
    tiny_diffusion.build_tiny_sdxl, "sdxl-inpaint", inpaint=True
)
tiny_lightning_dir = model_dir_fixture(tiny_diffusion.build_tiny_lightning, "lightning")
tiny_controlnet_dir = model_dir_fixture(tiny_diffusion.build_tiny_sdxl_controlnet, "controlnet")
tiny_depth_controlnet_dir = model_dir_fixture(
    tiny_diffusion.build_tiny_sdxl_controlnet, "cn-depth", seed=1
)
tiny_depth_estimator_dir = model_dir_fixture(tiny_diffusion.build_tiny_depth_estimator, "depth")
tiny_flux_dir = model_dir_fixture(tiny_diffusion.build_tiny_flux, "flux")
tiny_flux_fill_dir = model_dir_fixture(tiny_diffusion.build_tiny_flux, "flux-fill", fill=True)
tiny_sd3_dir = model_dir_fixture(tiny_diffusion.build_tiny_sd3, "sd3")
tiny_variation_dir = model_dir_fixture(tiny_diffusion.build_tiny_image_variation, "variation")
tiny_ip_adapter_dir = model_dir_fixture(tiny_diffusion.build_tiny_ip_adapter, "ip-adapter")
tiny_segmenter_dir = model_dir_fixture(build_tiny_segmenter, "birefnet")
"""A tiny BiRefNet-shaped ONNX segmenter, for background removal in stickers and ads."""

IP_ADAPTER_OPTIONS = {
    "subfolder": "sdxl_models",
    "weight_name": "tiny_ip_adapter.safetensors",
    "image_encoder_folder": "sdxl_models/image_encoder",
}


def picture(width: int = 32, height: int = 32, *, mask: bool = False) -> bytes:
    """A PNG: a dark square on a light ground (or a white-in-black mask of its centre)."""
    from PIL import Image, ImageDraw

    image = Image.new("L" if mask else "RGB", (width, height), 0 if mask else (230, 220, 200))
    box = (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    ImageDraw.Draw(image).rectangle(box, fill=255 if mask else (20, 40, 90))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_sizes(result: EngineResult) -> list[tuple[int, int]]:
    from PIL import Image

    return [Image.open(io.BytesIO(f.data)).size for f in result.output["images"]]


def assert_images(
    result: EngineResult, events: Events, sizes: list[tuple[int, int]], steps: int
) -> None:
    """``result`` holds images of ``sizes``, denoised with one progress event per step of
    ``steps``."""
    assert image_sizes(result) == sizes
    assert events.steps() == [(step, steps) for step in range(1, steps + 1)]
