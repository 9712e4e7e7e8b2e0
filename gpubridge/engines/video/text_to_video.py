"""Text-to-video, and image-to-video from a first frame, with diffusers video pipelines.

The pipeline class comes from the model's ``model_index.json`` (``LTXPipeline``,
``WanPipeline``...; the ``pipeline`` option overrides it). Models with an image-to-video sibling
(``LTXImageToVideoPipeline`` for LTX-Video, or the ``image_pipeline`` option) take ``image_url``
as the first frame, sharing the loaded weights; the others refuse it.

Options, besides those of ``engines.diffusion.common``: ``num_frames`` and ``fps`` (the model's
defaults), ``width``/``height``, ``num_inference_steps``, ``guidance_scale``,
``negative_prompt``, ``max_sequence_length``, ``decode_timestep``, ``decode_noise_scale``,
``guidance_rescale`` (passed to pipelines that take them), ``vae_dtype`` (load the VAE in its own
dtype, e.g. ``float32`` for Wan), ``vae_tiling`` (decode in tiles to save memory).
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import BackendConfig, Emit, EngineContext, EngineRequest, EngineResult
from gpubridge.engines.diffusion.common import (
    Generation,
    Send,
    diffusers_class,
    load_component,
    load_pipeline,
)
from gpubridge.engines.media import decode_image
from gpubridge.engines.video.common import fit_image, frames_for, oriented_size, pick, positive_int
from gpubridge.engines.video.engine import VideoEngine
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    from PIL import Image

    from gpubridge.engines.base import ModelRef

IMAGE_PIPELINES = {"LTXPipeline": "LTXImageToVideoPipeline"}
"""Image-to-video pipelines that reuse a text-to-video pipeline's components."""

PASSTHROUGH_OPTIONS = (
    "max_sequence_length",
    "decode_timestep",
    "decode_noise_scale",
    "guidance_rescale",
)

DEFAULT_FRAMES = 121
DEFAULT_FPS = 24


@dataclass
class VideoPipelines:
    """A loaded text-to-video pipeline and, when the model has one, its image-to-video twin."""

    text: Any
    image: Any | None


def load_video_pipelines(model: ModelRef, options: dict[str, Any]) -> VideoPipelines:
    """Load ``model``'s pipeline (and its image-to-video twin) on the options' device."""
    components: dict[str, Any] = {}
    if options.get("vae_dtype"):
        vae_options = {**options, "dtype": options["vae_dtype"]}
        components["vae"] = load_component("AutoModel", model.source, vae_options, subfolder="vae")
    text = load_pipeline(model.source, "DiffusionPipeline", options, **components)
    if options.get("vae_tiling"):
        text.vae.enable_tiling()
    image_class = options.get("image_pipeline") or IMAGE_PIPELINES.get(type(text).__name__)
    image = None
    if image_class:
        image = diffusers_class(str(image_class)).from_pipe(text)
        image.set_progress_bar_config(disable=True)
    return VideoPipelines(text, image)


def temporal_ratio(pipe: Any) -> int:
    """How many frames the pipeline's VAE packs into one latent frame."""
    for name in ("vae_temporal_compression_ratio", "vae_scale_factor_temporal"):
        value = getattr(pipe, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1


def call_default(pipe: Any, name: str) -> Any:
    """The default of argument ``name`` of ``pipe.__call__`` (``None`` when it has none)."""
    parameter = inspect.signature(pipe.__call__).parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default


@dataclass(frozen=True)
class Clip:
    """What one job asks for, beyond the shared generation parameters."""

    num_frames: int
    fps: int
    image: Image.Image | None
    sized: bool
    """Whether the job named its width or height (else a first frame's orientation wins)."""


class TextToVideo(VideoEngine):
    """An ``Engine`` making short videos from a prompt, or from a prompt and a first frame."""

    default_pipeline = "DiffusionPipeline"
    default_steps = 50
    default_guidance = 3.0

    def build_pipeline(self, model: ModelRef, options: dict[str, Any]) -> VideoPipelines:
        return load_video_pipelines(model, options)

    def read_clip(self, request: EngineRequest, options: dict[str, Any]) -> Clip:
        """Frame count, frame rate and the decoded first frame of ``request``."""
        media = request.media.get("image_url")
        return Clip(
            num_frames=positive_int(
                pick(request.input, options, "num_frames", DEFAULT_FRAMES), "num_frames"
            ),
            fps=positive_int(pick(request.input, options, "fps", DEFAULT_FPS), "fps"),
            image=decode_image(media) if media is not None else None,
            sized=request.input.get("width") is not None or request.input.get("height") is not None,
        )

    def make_video(
        self,
        pipes: VideoPipelines,
        options: dict[str, Any],
        gen: Generation,
        clip: Clip,
        send: Send,
        stop: threading.Event,
    ) -> dict[str, Any]:
        """Generate and encode one clip (blocking; one job at a time per engine)."""
        pipe: Any = pipes.text if clip.image is None else pipes.image
        width = gen.width or call_default(pipe, "width")
        height = gen.height or call_default(pipe, "height")
        call: dict[str, Any] = {
            "prompt": gen.prompt,
            "negative_prompt": gen.negative_prompt,
            "num_inference_steps": gen.steps,
            "guidance_scale": gen.guidance_scale,
            "num_frames": frames_for(clip.num_frames, temporal_ratio(pipe)),
            "frame_rate": clip.fps,
            **{key: options[key] for key in PASSTHROUGH_OPTIONS if key in options},
        }
        if clip.image is not None and width and height:
            if not clip.sized:
                width, height = oriented_size(clip.image, int(width), int(height))
            call["image"] = fit_image(clip.image, int(width), int(height))
        call.update(width=width, height=height)
        return self.render(
            pipe, call, seed=gen.seed, steps=gen.steps, fps=clip.fps, send=send, stop=stop
        )

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        """Generate the clip of ``request`` and return it encoded, with its seed."""
        options = self.options_for(request.model)
        gen = self.read_generation(request, options)
        clip = self.read_clip(request, options)
        pipes: VideoPipelines = await self.pipeline(request.model, emit)
        if clip.image is not None and pipes.image is None:
            raise InvalidInput(
                f"{request.model.id} makes videos from text only; image_url is not supported",
                violations=[{"path": "image_url", "message": "not supported by this model"}],
            )
        return await self.clip_job(
            emit, lambda send, stop: self.make_video(pipes, options, gen, clip, send, stop)
        )


def create(config: BackendConfig, context: EngineContext) -> TextToVideo:
    """The ``diffusers-video`` backend type."""
    return TextToVideo(config, context)
