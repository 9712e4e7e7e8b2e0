"""Image-to-image with diffusers: redraw an input image guided by a prompt.

The pipeline class comes from the model's ``pipeline`` option or ``AutoPipelineForImage2Image``
(SDXL refiner/base, SD 1.x/2.x, FLUX.1, SD3 image-to-image from the repository's own layout).
``strength`` (0-1) sets how far the result may move from the input; it also shortens the
denoising schedule to about ``strength * num_inference_steps`` steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import BackendConfig, EngineContext, EngineRequest
from gpubridge.engines.diffusion.common import ImageEditEngine
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    from PIL import Image


def read_strength(data: dict[str, Any], options: dict[str, Any], default: float = 0.5) -> float:
    """``strength`` from the input, else the model's option, else ``default``; in (0, 1]."""
    value = data.get("strength", options.get("strength", default))
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise InvalidInput("strength must be a number in (0, 1]")
    return float(value)


class Img2ImgEngine(ImageEditEngine):
    """An ``Engine`` redrawing ``image_url`` from ``prompt`` with a local diffusers pipeline."""

    default_pipeline = "AutoPipelineForImage2Image"

    def edit_inputs(
        self, request: EngineRequest, options: dict[str, Any], image: Image.Image
    ) -> dict[str, Any]:
        return {"strength": read_strength(request.input, options)}


def create(config: BackendConfig, context: EngineContext) -> Img2ImgEngine:
    """The ``diffusers-img2img`` backend type."""
    return Img2ImgEngine(config, context)
