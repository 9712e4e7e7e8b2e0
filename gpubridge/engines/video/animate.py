"""Image-to-video with Stable Video Diffusion: a still image becomes a short clip.

The image is cropped around its centre to the model's frame size (``width`` x ``height``
options, 1024x576 by default, turned upright for portrait images) and animated.

Options, besides those of ``engines.diffusion.common``: ``width``, ``height``, ``num_frames``
(default: the UNet's), ``fps``, ``num_inference_steps`` (25), ``min_guidance_scale`` (1.0),
``max_guidance_scale`` (3.0), ``decode_chunk_size`` (frames decoded at once by the VAE, 8;
lower saves memory).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import BackendConfig, Emit, EngineContext, EngineRequest, EngineResult
from gpubridge.engines.diffusion.common import Send, pick_seed
from gpubridge.engines.media import decode_image, require
from gpubridge.engines.video.common import fit_image, oriented_size, pick, positive_int
from gpubridge.engines.video.engine import VideoEngine
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_SIZE = (1024, 576)
DEFAULT_FPS = 7
DEFAULT_MOTION = 127
DEFAULT_NOISE_AUG = 0.02
DEFAULT_DECODE_CHUNK = 8


@dataclass(frozen=True)
class Animation:
    """The parameters of one job, after defaults from the model's options."""

    image: Image.Image
    num_frames: int | None
    fps: int
    motion_bucket_id: int
    noise_aug_strength: float
    seed: int
    steps: int
    decode_chunk_size: int


def read_animation(request: EngineRequest, options: dict[str, Any]) -> Animation:
    """The job's image and parameters; ``InvalidInput`` when they are unusable."""
    data = request.input
    frames = pick(data, options, "num_frames", None)
    noise = pick(data, options, "noise_aug_strength", DEFAULT_NOISE_AUG)
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0 <= noise <= 1:
        raise InvalidInput("noise_aug_strength must be a number in [0, 1]")
    return Animation(
        image=decode_image(require(request.media, "image_url")),
        num_frames=positive_int(frames, "num_frames") if frames is not None else None,
        fps=positive_int(pick(data, options, "fps", DEFAULT_FPS), "fps"),
        motion_bucket_id=positive_int(
            pick(data, options, "motion_bucket_id", DEFAULT_MOTION), "motion_bucket_id"
        ),
        noise_aug_strength=float(noise),
        seed=pick_seed(data.get("seed")),
        steps=positive_int(options.get("num_inference_steps", 25), "num_inference_steps"),
        decode_chunk_size=positive_int(
            options.get("decode_chunk_size", DEFAULT_DECODE_CHUNK), "decode_chunk_size"
        ),
    )


class Animate(VideoEngine):
    """An ``Engine`` animating a still image with Stable Video Diffusion."""

    default_pipeline = "StableVideoDiffusionPipeline"
    default_steps = 25
    prompt_required = False

    def animate(
        self,
        pipe: Any,
        options: dict[str, Any],
        job: Animation,
        send: Send,
        stop: threading.Event,
    ) -> dict[str, Any]:
        """Generate and encode one clip (blocking; one job at a time per engine)."""
        width, height = oriented_size(
            job.image,
            int(options.get("width", DEFAULT_SIZE[0])),
            int(options.get("height", DEFAULT_SIZE[1])),
        )
        num_frames = job.num_frames or int(getattr(pipe.unet.config, "num_frames", 25))
        call = {
            "image": fit_image(job.image, width, height),
            "width": width,
            "height": height,
            "num_frames": num_frames,
            "num_inference_steps": job.steps,
            "min_guidance_scale": options.get("min_guidance_scale"),
            "max_guidance_scale": options.get("max_guidance_scale"),
            "fps": job.fps,
            "motion_bucket_id": job.motion_bucket_id,
            "noise_aug_strength": job.noise_aug_strength,
            "decode_chunk_size": min(job.decode_chunk_size, num_frames),
        }
        return self.render(
            pipe, call, seed=job.seed, steps=job.steps, fps=job.fps, send=send, stop=stop
        )

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        """Animate the job's image and return the clip encoded, with its seed."""
        options = self.options_for(request.model)
        job = read_animation(request, options)
        pipe = await self.pipeline(request.model, emit)
        return await self.clip_job(
            emit, lambda send, stop: self.animate(pipe, options, job, send, stop)
        )


def create(config: BackendConfig, context: EngineContext) -> Animate:
    """The ``diffusers-animate`` backend type."""
    return Animate(config, context)
