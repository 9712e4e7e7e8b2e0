"""Inpainting with diffusers: repaint the white part of a mask over an image from a prompt.

The pipeline class comes from the model's ``pipeline`` option (``FluxFillPipeline`` for FLUX.1
Fill) or ``AutoPipelineForInpainting`` (SDXL, SD inpainting checkpoints). The mask is read as
grayscale and resized to the image; outputs have the image's size rounded down to a multiple
of 16.
"""

from __future__ import annotations

from typing import Any

from gpubridge.engines.base import BackendConfig, EngineContext, EngineRequest
from gpubridge.engines.diffusion.common import DiffusionEngine, Generation, input_image, snap_size


class InpaintEngine(DiffusionEngine):
    """An ``Engine`` repainting the masked area of ``image_url`` (mask ``mask_url``)."""

    default_pipeline = "AutoPipelineForInpainting"
    default_steps = 30
    default_guidance = 7.0

    def pipeline_inputs(
        self, pipe: Any, request: EngineRequest, options: dict[str, Any], gen: Generation
    ) -> dict[str, Any]:
        image = input_image(request)
        mask = input_image(request, "mask_url", "L")
        width, height = snap_size(gen.width or image.width, gen.height or image.height)
        inputs: dict[str, Any] = {
            "image": image.resize((width, height)),
            "mask_image": mask.resize((width, height)),
            "width": width,
            "height": height,
        }
        strength = request.input.get("strength", options.get("strength"))
        if strength is not None:
            inputs["strength"] = float(strength)
        return inputs


def create(config: BackendConfig, context: EngineContext) -> InpaintEngine:
    """The ``diffusers-inpaint`` backend type."""
    return InpaintEngine(config, context)
