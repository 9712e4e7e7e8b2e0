"""Text-to-image with diffusers: FLUX.1, Stable Diffusion 3.5, SDXL (Lightning), Playground v2.5.

The pipeline class comes from the model's ``pipeline`` option (``FluxPipeline``,
``StableDiffusion3Pipeline``, ``StableDiffusionXLPipeline``...) or ``AutoPipelineForText2Image``.

Distilled UNets such as SDXL-Lightning are served from their repository (the model ``source``)
on top of a base pipeline: ``base_model`` (the pipeline's repository) and ``unet_file`` (a full
UNet state dict in the source, e.g. ``sdxl_lightning_4step_unet.safetensors``) or ``lora_file``
(a LoRA in the source, fused into the base UNet; needs ``peft``). Such models get the Euler
scheduler with ``trailing`` timestep spacing unless ``scheduler`` says otherwise.
``scheduler`` / ``scheduler_config`` swap any pipeline's scheduler (a diffusers class name and
overrides of its config).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpubridge.engines.base import BackendConfig, EngineContext, ModelRef
from gpubridge.engines.diffusion.common import (
    DiffusionEngine,
    diffusers_class,
    load_pipeline,
    place_pipeline,
    pretrained_kwargs,
)
from gpubridge.engines.local import resolve_source


def source_file(source: str, filename: str) -> str:
    """The path of ``filename`` inside ``source`` (a local directory or a cached hub repo)."""
    location, local_only = resolve_source(source)
    if Path(location).is_dir():
        path = Path(location) / filename
        if not path.is_file():
            raise FileNotFoundError(f"{filename} is not in {source}")
        return str(path)
    from huggingface_hub import hf_hub_download

    return str(hf_hub_download(location, filename, local_files_only=local_only))


def set_scheduler(pipe: Any, name: str, config: dict[str, Any] | None = None) -> None:
    """Replace ``pipe``'s scheduler by the diffusers class ``name`` built from its current config
    with ``config`` overrides."""
    cls = diffusers_class(name)
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **(config or {}))


def load_distilled_unet(source: str, unet_file: str, base: str, options: dict[str, Any]) -> Any:
    """The base model's UNet with the full state dict ``unet_file`` of ``source`` loaded."""
    from safetensors.torch import load_file

    unet_cls = diffusers_class("UNet2DConditionModel")
    location, kwargs = pretrained_kwargs(base, options)
    config = unet_cls.load_config(
        location, subfolder="unet", local_files_only=kwargs["local_files_only"]
    )
    unet = unet_cls.from_config(config)
    unet.load_state_dict(load_file(source_file(source, unet_file)))
    return unet.to(kwargs["dtype"])


def load_text_to_image(
    model: ModelRef, options: dict[str, Any], default_class: str = "AutoPipelineForText2Image"
) -> Any:
    """The pipeline for ``model`` (see the module docstring for the options)."""
    base = options.get("base_model")
    if not base:
        pipe = load_pipeline(model.source, default_class, options)
    else:
        components: dict[str, Any] = {}
        if options.get("unet_file"):
            components["unet"] = load_distilled_unet(
                model.source, str(options["unet_file"]), str(base), options
            )
        pipe = load_pipeline(str(base), default_class, options, place=False, **components)
        if options.get("lora_file"):
            pipe.load_lora_weights(
                resolve_source(model.source)[0], weight_name=str(options["lora_file"])
            )
            pipe.fuse_lora()
        if not options.get("scheduler"):
            set_scheduler(pipe, "EulerDiscreteScheduler", {"timestep_spacing": "trailing"})
        pipe = place_pipeline(pipe, options)
    if options.get("scheduler"):
        set_scheduler(pipe, str(options["scheduler"]), options.get("scheduler_config"))
    return pipe


class TextToImageEngine(DiffusionEngine):
    """An ``Engine`` generating images from a prompt with a local diffusers pipeline."""

    default_pipeline = "AutoPipelineForText2Image"
    default_steps = 30
    default_guidance = 5.0

    def build_pipeline(self, model: ModelRef, options: dict[str, Any]) -> Any:
        return load_text_to_image(model, options, self.default_pipeline)


def create(config: BackendConfig, context: EngineContext) -> TextToImageEngine:
    """The ``diffusers-text-to-image`` backend type."""
    return TextToImageEngine(config, context)
