"""Identity-preserving portraits with diffusers: an SDXL pipeline with an IP-Adapter (e.g.
``h94/IP-Adapter`` ``ip-adapter-plus-face_sdxl_vit-h``) that takes the face photo as its image
prompt; ``style_strength`` lowers the adapter scale (``scale = max_scale * (1 - style_strength)``)
so the prompt's style can move further from the face.

Options: ``base_model`` (the pipeline repository), ``subfolder`` and ``weight_name`` (the
adapter file in the model ``source``), ``image_encoder_folder`` (its CLIP vision encoder, a
path inside ``source``), ``max_scale`` (default 1.0).
"""

from __future__ import annotations

from typing import Any

from gpubridge.engines.base import BackendConfig, EngineContext, EngineRequest, ModelRef
from gpubridge.engines.diffusion.common import (
    DiffusionEngine,
    Generation,
    input_image,
    load_pipeline,
    place_pipeline,
)
from gpubridge.engines.local import resolve_source
from gpubridge.errors import InvalidInput


def adapter_scale(style_strength: Any, max_scale: float) -> float:
    """The IP-Adapter scale for ``style_strength`` in [0, 1]."""
    if isinstance(style_strength, bool) or not isinstance(style_strength, int | float):
        raise InvalidInput("style_strength must be a number in [0, 1]")
    if not 0 <= style_strength <= 1:
        raise InvalidInput("style_strength must be a number in [0, 1]")
    return round(max_scale * (1.0 - float(style_strength)), 4)


class PortraitEngine(DiffusionEngine):
    """An ``Engine`` drawing the person of ``image_url`` as ``prompt`` describes."""

    default_pipeline = "StableDiffusionXLPipeline"
    default_steps = 30
    default_guidance = 5.0

    def build_pipeline(self, model: ModelRef, options: dict[str, Any]) -> Any:
        base = options.get("base_model")
        if not base or not options.get("weight_name"):
            raise ValueError("a portrait model needs the base_model and weight_name options")
        pipe = load_pipeline(str(base), self.default_pipeline, options, place=False)
        location, local_only = resolve_source(model.source)
        pipe.load_ip_adapter(
            location,
            subfolder=str(options.get("subfolder", "")),
            weight_name=str(options["weight_name"]),
            image_encoder_folder=str(options.get("image_encoder_folder", "image_encoder")),
            local_files_only=local_only,
        )
        return place_pipeline(pipe, options)

    def pipeline_inputs(
        self, pipe: Any, request: EngineRequest, options: dict[str, Any], gen: Generation
    ) -> dict[str, Any]:
        face = input_image(request)
        strength = request.input.get("style_strength", options.get("style_strength", 0.2))
        pipe.set_ip_adapter_scale(adapter_scale(strength, float(options.get("max_scale", 1.0))))
        return {"ip_adapter_image": face}


def create(config: BackendConfig, context: EngineContext) -> PortraitEngine:
    """The ``diffusers-portrait`` backend type."""
    return PortraitEngine(config, context)
