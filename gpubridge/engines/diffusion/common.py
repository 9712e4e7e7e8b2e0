"""Pieces shared by the diffusers engines: loading pipelines and the base engine that keeps them
resident. It also re-exports ``generation`` (parameters, seeds, step progress, outputs), so
engines import everything from here.

torch and diffusers are imported inside the functions, which run in worker threads.

Options (a backend's ``options``, overridden by a catalog model's ``options``):

- ``pipeline``: the diffusers pipeline class name (``FluxPipeline``...); else the engine's own.
- ``dtype``: ``float16`` | ``bfloat16`` | ``float32`` | ``auto``; default float16 on CUDA;
  half precision is a GPU setting, CPU runs float32.
- ``device``: ``cuda``, ``cpu``, ``cuda:1``...; default CUDA when available.
- ``variant``: weight file variant to load (``fp16``), when the repository has one.
- ``cpu_offload``: ``model`` (or true) or ``sequential``: keep weights in CPU memory and move
  them to the GPU as they are used, for models larger than the accelerator.
- generation defaults such as ``num_inference_steps`` and ``guidance_scale``
  (see ``GENERATION_KEYS``), and ``max_sequence_length`` / ``true_cfg_scale`` for the
  pipelines that take them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
    ModelRef,
)
from gpubridge.engines.diffusion.generation import (
    MAX_SEED,
    Generation,
    Send,
    StepCallback,
    generate_images,
    generation,
    generators,
    images_result,
    input_image,
    legacy_step_callback,
    pick_seed,
    sized_input_image,
    snap_size,
    step_callback,
    supported_kwargs,
)
from gpubridge.engines.local import pick_device, resolve_source, threadsafe_emit
from gpubridge.engines.resident_engine import ResidentEngine

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "CALL_OPTIONS",
    "GENERATION_KEYS",
    "MAX_SEED",
    "DiffusionEngine",
    "Generation",
    "ImageEditEngine",
    "Send",
    "StepCallback",
    "call_options",
    "diffusers_class",
    "generate_images",
    "generation",
    "generators",
    "images_result",
    "input_image",
    "legacy_step_callback",
    "load_component",
    "load_pipeline",
    "pick_seed",
    "place_pipeline",
    "pretrained_kwargs",
    "resident_key",
    "sized_input_image",
    "snap_size",
    "step_callback",
    "supported_kwargs",
    "torch_dtype",
]

GENERATION_KEYS = frozenset(
    {
        "num_inference_steps",
        "guidance_scale",
        "strength",
        "width",
        "height",
        "negative_prompt",
        "max_sequence_length",
        "true_cfg_scale",
        "controlnet_conditioning_scale",
        "style_strength",
        "canny_low",
        "canny_high",
        "max_scale",
    }
)
"""Option keys that only change how a loaded pipeline is called, never what is loaded."""

CALL_OPTIONS = ("max_sequence_length", "true_cfg_scale")
"""Model options passed to every pipeline call that takes them (e.g. FLUX's T5 length)."""


def call_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``CALL_OPTIONS`` set in ``options``."""
    return {key: options[key] for key in CALL_OPTIONS if options.get(key) is not None}


def resident_key(source: str, options: Mapping[str, Any]) -> str:
    """The residency key of a pipeline: its source plus the options that change what is loaded."""
    loading = {k: v for k, v in options.items() if k not in GENERATION_KEYS}
    if not loading:
        return source
    return f"{source}#{json.dumps(loading, sort_keys=True, default=str)}"


def torch_dtype(name: str | None, device: str) -> torch.dtype | str:
    """The torch dtype named ``name`` (``auto`` passes through); half precision on CUDA by
    default, float32 on CPU (where half-precision names are ignored: they are GPU settings)."""
    import torch

    if name == "auto":
        return "auto"
    if not device.startswith("cuda") and name in (None, "float16", "bfloat16"):
        return torch.float32
    if not name:
        return torch.float16
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def diffusers_class(name: str) -> Any:
    """A class exported by diffusers (a pipeline, model or scheduler) by name."""
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ValueError(f"diffusers has no class named {name!r}")
    return cls


def pretrained_kwargs(source: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(location, kwargs)`` for ``from_pretrained``: ``local_files_only``, ``dtype`` and
    ``variant`` from ``options``."""
    location, local_only = resolve_source(source)
    device = pick_device(options.get("device"))
    kwargs: dict[str, Any] = {
        "local_files_only": local_only,
        "dtype": torch_dtype(options.get("dtype"), device),
    }
    if options.get("variant"):
        kwargs["variant"] = options["variant"]
    return location, kwargs


def load_component(class_name: str, source: str, options: Mapping[str, Any], **extra: Any) -> Any:
    """A single diffusers model (``ControlNetModel``, ``UNet2DConditionModel``...) from ``source``,
    with the same dtype/variant/offline rules as pipelines (``extra`` goes to from_pretrained)."""
    location, kwargs = pretrained_kwargs(source, options)
    return diffusers_class(class_name).from_pretrained(location, **{**kwargs, **extra})


def load_pipeline(
    source: str,
    default_class: str,
    options: Mapping[str, Any],
    *,
    place: bool = True,
    **components: Any,
) -> Any:
    """A pipeline of class ``options["pipeline"]`` (else ``default_class``; ``Auto*`` classes
    work too) from ``source``, with ``components`` (a UNet, ControlNet, scheduler...) replacing
    the repository's own, placed on its device (see ``place_pipeline``) unless ``place`` is
    false (call ``place_pipeline`` after changing it then)."""
    location, kwargs = pretrained_kwargs(source, options)
    cls = diffusers_class(str(options.get("pipeline") or default_class))
    pipe = cls.from_pretrained(location, **kwargs, **components)
    return place_pipeline(pipe, options) if place else pipe


def place_pipeline(pipe: Any, options: Mapping[str, Any]) -> Any:
    """Move ``pipe`` to its device, or enable CPU offload on CUDA when ``cpu_offload`` is set;
    turns off the progress bar."""
    device = pick_device(options.get("device"))
    offload = options.get("cpu_offload")
    if offload and device.startswith("cuda"):
        gpu_id = int(device.partition(":")[2] or 0)
        if offload == "sequential":
            pipe.enable_sequential_cpu_offload(gpu_id=gpu_id)
        else:
            pipe.enable_model_cpu_offload(gpu_id=gpu_id)
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class DiffusionEngine(ResidentEngine[Any]):
    """Base of the diffusers engines: keeps pipelines resident per (source, loading options) and
    releases them on ``unload``. Subclasses implement ``build_pipeline`` (runs in a worker
    thread) and ``run``."""

    default_pipeline: str = "AutoPipelineForText2Image"
    default_steps: int = 30
    default_guidance: float = 7.0
    prompt_required: bool = True

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        self._busy = threading.Lock()

    def build_pipeline(self, model: ModelRef, options: dict[str, Any]) -> Any:
        """Build the pipeline for ``model`` with its merged ``options`` (blocking)."""
        return load_pipeline(model.source, self.default_pipeline, options)

    def resident_key(self, ref: ModelRef) -> str:
        return resident_key(ref.source, self.options_for(ref))

    def load_model(self, ref: ModelRef) -> Any:
        return self.build_pipeline(ref, self.options_for(ref))

    async def pipeline(self, model: ModelRef, emit: Emit | None = None) -> Any:
        """The resident pipeline for ``model``, loading it on first use."""
        return await self.model(model, emit)

    def read_generation(self, request: EngineRequest, options: dict[str, Any]) -> Generation:
        """The shared parameters of ``request`` with this engine's defaults."""
        return generation(
            request.input,
            options,
            steps=self.default_steps,
            guidance_scale=self.default_guidance,
            prompt_required=self.prompt_required,
        )

    def pipeline_inputs(
        self, pipe: Any, request: EngineRequest, options: dict[str, Any], gen: Generation
    ) -> dict[str, Any]:
        """Extra pipeline arguments for ``request`` (decoded images, masks, strength...); runs
        in the worker thread, holding the engine's pipeline lock (so it may also set per-job
        pipeline state such as adapter scales). Raise ``InvalidInput`` for bad input."""
        return {}

    def generate(
        self,
        pipe: Any,
        request: EngineRequest,
        options: dict[str, Any],
        gen: Generation,
        send: Send,
    ) -> list[Image.Image]:
        """Produce the images of one job (blocking; one job at a time per engine)."""
        with self._busy:
            inputs = self.pipeline_inputs(pipe, request, options, gen)
            return generate_images(pipe, gen, send, **call_options(options), **inputs)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        """Load (or reuse) the model's pipeline, generate, and return the images and usage."""
        options = self.options_for(request.model)
        gen = self.read_generation(request, options)
        pipe = await self.pipeline(request.model, emit)
        send = threadsafe_emit(emit)
        images, seconds = await self.timed(lambda: self.generate(pipe, request, options, gen, send))
        return images_result(images, gen.output_format, gen.seed, seconds)


class ImageEditEngine(DiffusionEngine):
    """A ``DiffusionEngine`` redrawing the job's ``image_url`` at the requested size (else the
    image's own) snapped to multiples of 16; subclasses add their inputs in ``edit_inputs``."""

    def pipeline_inputs(
        self, pipe: Any, request: EngineRequest, options: dict[str, Any], gen: Generation
    ) -> dict[str, Any]:
        image = sized_input_image(request, gen)
        extra = self.edit_inputs(request, options, image)
        return {"image": image, "width": image.width, "height": image.height, **extra}

    def edit_inputs(
        self, request: EngineRequest, options: dict[str, Any], image: Image.Image
    ) -> dict[str, Any]:
        """Pipeline arguments besides the sized image and its size (strength, mask...)."""
        return {}
