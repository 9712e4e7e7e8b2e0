"""Image variations with diffusers: new images from the CLIP image embedding of an input image
(``StableDiffusionImageVariationPipeline``, e.g. ``lambdalabs/sd-image-variations-diffusers``);
no prompt."""

from __future__ import annotations

from typing import Any

from gpubridge.engines.base import BackendConfig, EngineContext, EngineRequest
from gpubridge.engines.diffusion.common import DiffusionEngine, Generation, input_image


class VariationEngine(DiffusionEngine):
    """An ``Engine`` making variations of ``image_url``."""

    default_pipeline = "StableDiffusionImageVariationPipeline"
    default_steps = 50
    default_guidance = 3.0
    prompt_required = False

    def pipeline_inputs(
        self, pipe: Any, request: EngineRequest, options: dict[str, Any], gen: Generation
    ) -> dict[str, Any]:
        return {"image": input_image(request)}


def create(config: BackendConfig, context: EngineContext) -> VariationEngine:
    """The ``diffusers-image-variation`` backend type."""
    return VariationEngine(config, context)
