"""Pieces shared by the video engines: input reading, frame counts, first-frame fitting, results.

Pillow is imported inside the functions, which run in worker threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from gpubridge.engines.base import EngineResult, Usage
from gpubridge.engines.local import progress_event
from gpubridge.engines.video.encode import encode_video
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    from PIL import Image

    from gpubridge.engines.diffusion.common import Send, StepCallback

T = TypeVar("T")


class Interrupted(Exception):
    """Raised inside a pipeline's step callback to stop a job that was cancelled."""


def stoppable(callback: StepCallback, stop: threading.Event) -> StepCallback:
    """``callback``, then an ``Interrupted`` error once ``stop`` is set: the pipeline ends at
    the next step instead of running a cancelled job to the end."""

    def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        result = callback(pipe, step, timestep, kwargs)
        if stop.is_set():
            raise Interrupted
        return result

    return on_step_end


async def stopping_on_cancel(
    work: Callable[[threading.Event], Awaitable[T]],
) -> T:
    """``await work(stop)``, setting ``stop`` when the awaiting job is cancelled (the worker
    thread still running the pipeline then stops at its next step)."""
    stop = threading.Event()
    try:
        return await work(stop)
    except asyncio.CancelledError:
        stop.set()
        raise


def pick(data: Mapping[str, Any], options: Mapping[str, Any], key: str, default: Any) -> Any:
    """``data[key]`` when set, else ``options[key]``, else ``default``."""
    value = data.get(key)
    return options.get(key, default) if value is None else value


def positive_int(value: Any, name: str) -> int:
    """``value`` as an integer of at least 1, or ``InvalidInput``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) < 1:
        raise InvalidInput(
            f"{name} must be a positive integer",
            violations=[{"path": name, "message": "must be a positive integer"}],
        )
    return int(value)


def frames_for(requested: int, temporal_ratio: int) -> int:
    """The frame count closest below ``requested`` that a VAE compressing ``temporal_ratio``
    frames into one latent frame can make (``k * ratio + 1``, at least ``ratio + 1``)."""
    ratio = max(1, temporal_ratio)
    if ratio == 1:
        return max(1, requested)
    return max(1, (requested - 1) // ratio) * ratio + 1


def fit_image(image: Image.Image, width: int, height: int) -> Image.Image:
    """``image`` cropped around its centre to the aspect of ``width`` x ``height`` and resized
    to it (nothing is stretched)."""
    from PIL import ImageOps

    if image.size == (width, height):
        return image
    return ImageOps.fit(image, (width, height), method=3, centering=(0.5, 0.5))


def oriented_size(image: Image.Image, width: int, height: int) -> tuple[int, int]:
    """``(width, height)``, swapped when the image's orientation (portrait or landscape)
    differs from it."""
    if (image.height > image.width) != (height > width) and image.height != image.width:
        return height, width
    return width, height


def first_video(frames: Any) -> Any:
    """The first video of a diffusers pipeline's ``frames`` (a batch of frame lists or an
    array of shape (batch, frames, H, W, C))."""
    if hasattr(frames, "ndim") and frames.ndim == 5:
        return frames[0]
    if isinstance(frames, list | tuple) and frames and isinstance(frames[0], list | tuple):
        return frames[0]
    return frames


def video_output(frames: Any, fps: float, seed: int, send: Send) -> dict[str, Any]:
    """``{"video", "frames", "fps", "seed", "format", "codec"}`` for ``frames`` encoded at
    ``fps`` (MP4, or a GIF where no MP4 encoder exists); runs in a worker thread."""
    send(progress_event("encoding", 0, 1))
    encoded = encode_video(first_video(frames), fps)
    send(progress_event("encoding", 1, 1))
    count = int(encoded["video"].metadata["frames"])
    return {"frames": count, "fps": fps, "seed": seed, **encoded}


def video_result(output: dict[str, Any], seconds: float) -> EngineResult:
    """A video job's result, billed as one output and ``seconds`` of compute."""
    return EngineResult(output=output, usage=Usage(outputs=1, compute_seconds=round(seconds, 4)))
