"""Inpainting with diffusers: repaint the white part of a mask over an image from a prompt.

The pipeline class comes from the model's ``pipeline`` option (``FluxFillPipeline`` for FLUX.1
Fill) or ``AutoPipelineForInpainting`` (SDXL, SD inpainting checkpoints). The mask is read as
grayscale and resized to the image; outputs have the image's size rounded down to a multiple
of 16.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import BackendConfig, EngineContext, EngineRequest
from gpubridge.engines.diffusion.common import ImageEditEngine, input_image

if TYPE_CHECKING:
    from PIL import Image


class InpaintEngine(ImageEditEngine):
    """An ``Engine`` repainting the masked area of ``image_url`` (mask ``mask_url``)."""

    default_pipeline = "AutoPipelineForInpainting"

    def edit_inputs(
        self, request: EngineRequest, options: dict[str, Any], image: Image.Image
    ) -> dict[str, Any]:
        inputs: dict[str, Any] = {
            "mask_image": input_image(request, "mask_url", "L").resize(image.size)
        }
        strength = request.input.get("strength", options.get("strength"))
        if strength is not None:
            inputs["strength"] = float(strength)
        return inputs


def create(config: BackendConfig, context: EngineContext) -> InpaintEngine:
    """The ``diffusers-inpaint`` backend type."""
    return InpaintEngine(config, context)
