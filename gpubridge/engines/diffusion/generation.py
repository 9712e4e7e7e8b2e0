"""Running a loaded diffusers pipeline for one job: the shared parameters, seeded generators,
per-step progress, and the images it returns as job output.

torch and Pillow are imported inside the functions, which run in worker threads.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import EngineEvent, EngineRequest, EngineResult, Usage
from gpubridge.engines.local import progress_event
from gpubridge.engines.media import decode_image, image_file, require
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    import torch
    from PIL import Image

Send = Callable[[EngineEvent], None]
"""A plain, thread-safe event sink (``local.threadsafe_emit(emit)``)."""
StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]

MAX_SEED = 2**32 - 1


def step_callback(send: Send, total: int, stage: str = "denoising") -> StepCallback:
    """A diffusers ``callback_on_step_end`` sending ``progress_event(stage, step, total)`` after
    each denoising step (``total`` is replaced by the pipeline's own ``num_timesteps`` when it
    knows it, e.g. after ``strength`` shortened the schedule)."""

    def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        steps = getattr(pipe, "_num_timesteps", None)
        count = steps if isinstance(steps, int) and steps > 0 else total
        send(progress_event(stage, step + 1, count))
        return kwargs

    return on_step_end


def legacy_step_callback(send: Send, total: int, stage: str = "denoising") -> Callable[..., None]:
    """The same progress for pipelines that only take the older ``callback(step, timestep,
    latents)`` (with ``callback_steps=1``); calls are counted, since multistep schedulers
    report their own step indices."""
    done = 0

    def on_step(step: int, timestep: Any, latents: Any) -> None:
        nonlocal done
        done = min(done + 1, total)
        send(progress_event(stage, done, total))

    return on_step


def pick_seed(seed: int | None) -> int:
    """``seed`` as given, or a random one in ``[0, 2**32 - 1]``."""
    if seed is None:
        return random.randint(0, MAX_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidInput(f"seed must be an integer in [0, {MAX_SEED}]")
    return seed


def generators(seed: int, count: int) -> list[torch.Generator]:
    """One CPU ``torch.Generator`` per output, seeded ``seed, seed + 1, ...``: output ``i`` is
    reproduced alone by a job with ``seed + i`` and ``num_outputs = 1``, on any device."""
    import torch

    return [torch.Generator("cpu").manual_seed((seed + i) % (MAX_SEED + 1)) for i in range(count)]


@dataclass(frozen=True)
class Generation:
    """The parameters every image service shares, after defaults from the model's options."""

    prompt: str
    negative_prompt: str | None
    num_outputs: int
    steps: int
    guidance_scale: float
    seed: int
    output_format: str
    width: int | None
    height: int | None


def generation(
    data: Mapping[str, Any],
    options: Mapping[str, Any],
    *,
    steps: int = 30,
    guidance_scale: float = 7.0,
    prompt_required: bool = True,
) -> Generation:
    """Read the shared parameters from a job's input; unset ones come from ``options`` and then
    the given defaults. Raises ``InvalidInput`` for a missing prompt."""
    prompt = data.get("prompt")
    if prompt_required and (not isinstance(prompt, str) or not prompt):
        raise InvalidInput(
            "prompt is required", violations=[{"path": "prompt", "message": "is required"}]
        )

    def pick(key: str, default: Any) -> Any:
        value = data.get(key)
        return options.get(key, default) if value is None else value

    width, height = pick("width", None), pick("height", None)
    return Generation(
        prompt=prompt if isinstance(prompt, str) else "",
        negative_prompt=pick("negative_prompt", None),
        num_outputs=int(data.get("num_outputs") or 1),
        steps=int(pick("num_inference_steps", steps)),
        guidance_scale=float(pick("guidance_scale", guidance_scale)),
        seed=pick_seed(data.get("seed")),
        output_format=str(data.get("output_format") or "png"),
        width=int(width) if width is not None else None,
        height=int(height) if height is not None else None,
    )


def supported_kwargs(pipe: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` without ``None`` values and without names ``pipe.__call__`` does not take
    (e.g. ``negative_prompt`` for pipelines without classifier-free guidance)."""
    params = inspect.signature(pipe.__call__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {k: v for k, v in kwargs.items() if v is not None}
    return {k: v for k, v in kwargs.items() if v is not None and k in params}


def generate_images(pipe: Any, gen: Generation, send: Send, **inputs: Any) -> list[Image.Image]:
    """Call ``pipe`` for ``gen`` (prompt, steps, guidance, size, one seeded generator per output,
    a progress event per step) plus ``inputs`` (images, masks, strength...), keeping only the
    arguments the pipeline takes, and return its PIL images."""
    call = {
        "prompt": gen.prompt or None,
        "negative_prompt": gen.negative_prompt,
        "num_inference_steps": gen.steps,
        "guidance_scale": gen.guidance_scale,
        "width": gen.width,
        "height": gen.height,
        "num_images_per_prompt": gen.num_outputs,
        "generator": generators(gen.seed, gen.num_outputs),
        "output_type": "pil",
        **inputs,
    }
    params = inspect.signature(pipe.__call__).parameters
    if "callback_on_step_end" in params or "callback" not in params:
        call["callback_on_step_end"] = step_callback(send, gen.steps)
    else:  # pipelines with the older per-step callback
        call["callback"] = legacy_step_callback(send, gen.steps)
        call["callback_steps"] = 1
    return list(pipe(**supported_kwargs(pipe, call)).images)


def input_image(request: EngineRequest, field: str = "image_url", mode: str = "RGB") -> Image.Image:
    """The decoded media input ``field`` of ``request`` (``InvalidInput`` when missing or bad)."""
    return decode_image(require(request.media, field), mode)


def snap_size(width: int, height: int, multiple: int = 16) -> tuple[int, int]:
    """``(width, height)`` rounded down to multiples of ``multiple`` (at least one multiple)."""
    return max(multiple, width // multiple * multiple), max(multiple, height // multiple * multiple)


def sized_input_image(
    request: EngineRequest, gen: Generation, field: str = "image_url", mode: str = "RGB"
) -> Image.Image:
    """The media input ``field`` at the requested size (else its own), snapped to multiples
    of 16."""
    image = input_image(request, field, mode)
    size = snap_size(gen.width or image.width, gen.height or image.height)
    return image if image.size == size else image.resize(size)


def images_result(
    images: list[Image.Image], fmt: str, seed: int, seconds: float, **extra: Any
) -> EngineResult:
    """``{"images": [image file, ...], "seed": seed, **extra}`` billed as one output per image
    (each file's metadata carries its own seed, ``seed + i``)."""
    files = [image_file(img, fmt, seed=(seed + i) % (MAX_SEED + 1)) for i, img in enumerate(images)]
    return EngineResult(
        output={"images": files, "seed": seed, **extra},
        usage=Usage(outputs=len(files), compute_seconds=round(seconds, 4)),
    )
