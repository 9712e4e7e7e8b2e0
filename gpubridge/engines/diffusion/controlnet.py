"""ControlNet with diffusers: generate an image following the structure of a reference image.

The control map is derived from ``image_url`` by ``control_type``: ``canny`` edges with OpenCV
(thresholds from the ``canny_low`` / ``canny_high`` options, default 100 / 200) or ``depth``
from a depth-estimation model. Options: ``base_model`` (the pipeline repository, loaded as
``StableDiffusionXLControlNetPipeline`` unless ``pipeline`` says otherwise), ``controlnets``
(ControlNet weights by control type; ``canny`` defaults to the model's ``source``) and
``annotators`` (the depth-estimation model by control type). A control type is offered when
the model names its ControlNet (and, for depth, its annotator).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
    ModelRef,
)
from gpubridge.engines.diffusion.annotators import (
    DepthEstimator,
    canny_map,
    depth_map,
    load_depth_estimator,
)
from gpubridge.engines.diffusion.common import (
    DiffusionEngine,
    call_options,
    generate_images,
    images_result,
    load_component,
    load_pipeline,
    sized_input_image,
)
from gpubridge.engines.local import threadsafe_emit
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["ControlNetEngine", "canny_map", "control_types", "create"]


def control_types(model: ModelRef, options: dict[str, Any]) -> dict[str, str]:
    """The ControlNet source of each control type ``model`` offers."""
    controlnets = {"canny": model.source, **dict(options.get("controlnets") or {})}
    annotators = dict(options.get("annotators") or {})
    return {k: str(v) for k, v in controlnets.items() if k == "canny" or k in annotators}


class ControlNetEngine(DiffusionEngine):
    """An ``Engine`` generating from ``prompt`` under a control map derived from ``image_url``."""

    default_pipeline = "StableDiffusionXLControlNetPipeline"
    default_steps = 30
    default_guidance = 7.0

    def build_pipeline(self, model: ModelRef, options: dict[str, Any]) -> Any:
        base = options.get("base_model")
        if not base:
            raise ValueError("a ControlNet model needs the base_model option")
        controlnet = load_component("ControlNetModel", model.source, options)
        return load_pipeline(str(base), self.default_pipeline, options, controlnet=controlnet)

    async def _annotator(
        self, kind: str, options: dict[str, Any], emit: Emit
    ) -> DepthEstimator | None:
        if kind == "canny":
            return None
        source = str(options["annotators"][kind])
        device = options.get("device")
        return await self.resident(
            f"annotator:{source}",
            lambda: load_depth_estimator(source, device),
            emit=emit,
            label=f"{kind} annotator",
            source=source,
        )

    def control_map(
        self, image: Image.Image, options: dict[str, Any], annotator: DepthEstimator | None
    ) -> Image.Image:
        """The control image for ``image``: depth when an annotator is given, else edges."""
        if annotator is not None:
            return depth_map(annotator, image)
        return canny_map(
            image, int(options.get("canny_low", 100)), int(options.get("canny_high", 200))
        )

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        options = self.options_for(request.model)
        offered = control_types(request.model, options)
        kind = request.input.get("control_type") or "canny"
        if kind not in offered:
            raise InvalidInput(f"control_type must be one of {sorted(offered)}")
        gen = self.read_generation(request, options)
        model = replace(request.model, id=f"{request.model.id}:{kind}", source=offered[kind])
        annotator = await self._annotator(kind, options, emit)
        pipe = await self.pipeline(model, emit)
        send = threadsafe_emit(emit)

        def work() -> list[Image.Image]:
            image = sized_input_image(request, gen)
            width, height = image.size
            control = self.control_map(image, options, annotator)
            scale = request.input.get(
                "controlnet_conditioning_scale", options.get("controlnet_conditioning_scale", 0.8)
            )
            with self._busy:
                return generate_images(
                    pipe,
                    gen,
                    send,
                    **call_options(options),
                    image=control,
                    controlnet_conditioning_scale=float(scale),
                    width=width,
                    height=height,
                )

        images, seconds = await self.timed(work)
        return images_result(images, gen.output_format, gen.seed, seconds, control_type=kind)


def create(config: BackendConfig, context: EngineContext) -> ControlNetEngine:
    """The ``diffusers-controlnet`` backend type."""
    return ControlNetEngine(config, context)
