"""Image captioning with BLIP (``BlipForConditionalGeneration`` + ``BlipProcessor``).

``load_blip`` and ``caption_image`` are shared with the CLIP interrogator, which starts from a
BLIP caption. torch and transformers are imported inside the functions, which run in worker
threads; image processors use their PIL backend when torchvision is missing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
    ModelRef,
    Usage,
)
from gpubridge.engines.local import pick_device, release_memory, resolve_source
from gpubridge.engines.media import decode_image, require
from gpubridge.engines.residency import Resident
from gpubridge.errors import BackendError, InvalidInput

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_MAX_TOKENS = 50
MAX_TOKENS_LIMIT = 200


@dataclass
class LoadedBlip:
    """A BLIP processor and captioning model ready on ``device``."""

    processor: Any
    model: Any
    device: str
    dtype: Any


@dataclass
class Caption:
    """A generated caption and what making it took."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def torch_dtype(name: str | None, device: str) -> Any:
    """The torch dtype named by ``name``; by default float16 on CUDA and float32 elsewhere."""
    import torch

    if name and name != "auto":
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown dtype {name!r}")
        return dtype
    return torch.float16 if device.startswith("cuda") else torch.float32


def load_blip(source: str, device: str | None = None, dtype: str | None = None) -> LoadedBlip:
    """Load a BLIP captioner from ``source`` (a local directory or a cached hub id)."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    device = pick_device(device)
    path, local_only = resolve_source(source)
    chosen = torch_dtype(dtype, device)
    processor = BlipProcessor.from_pretrained(path, local_files_only=local_only)
    model: Any = BlipForConditionalGeneration.from_pretrained(
        path, local_files_only=local_only, dtype=chosen
    )
    model.to(device)
    model.eval()
    return LoadedBlip(processor=processor, model=model, device=device, dtype=chosen)


def caption_image(
    loaded: LoadedBlip, image: Image.Image, prompt: str | None, max_tokens: int
) -> Caption:
    """Caption ``image`` (conditioned on ``prompt``, which starts the caption, when given)."""
    import torch

    text = prompt.strip() if prompt else None
    inputs = loaded.processor(images=image, text=text or None, return_tensors="pt")
    inputs = {
        key: value.to(loaded.device, loaded.dtype if key == "pixel_values" else None)
        for key, value in inputs.items()
    }
    # BLIP's generate drops the trailing [SEP] of a text prompt; unconditional runs start at BOS.
    prompt_tokens = max(int(inputs["input_ids"].shape[1]) - 1, 1) if text else 1
    started = time.perf_counter()
    with torch.inference_mode():
        output = loaded.model.generate(**inputs, max_new_tokens=max_tokens)
    seconds = time.perf_counter() - started
    caption = loaded.processor.decode(output[0], skip_special_tokens=True).strip()
    return Caption(
        text=caption,
        prompt_tokens=prompt_tokens,
        completion_tokens=max(int(output.shape[1]) - prompt_tokens, 0),
        seconds=seconds,
    )


def max_tokens_of(data: dict[str, Any], default: int) -> int:
    """The request's ``max_tokens`` (1 to 200), or ``default``."""
    value = data.get("max_tokens", default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_LIMIT:
        raise InvalidInput(f"max_tokens must be an integer from 1 to {MAX_TOKENS_LIMIT}")
    return value


class BlipCaptioner:
    """An ``Engine`` describing images in one sentence with BLIP; models load once and stay."""

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        self.name = config.name
        self._device: str | None = config.options.get("device")
        self._dtype: str | None = config.options.get("dtype")
        self._default_max_tokens = int(config.options.get("max_tokens", DEFAULT_MAX_TOKENS))
        cache = context.model_cache() if context is not None else None
        self._models: Resident[LoadedBlip] = Resident(cache, config.name)

    async def _loaded(self, model: ModelRef, emit: Emit | None = None) -> LoadedBlip:
        device = model.options.get("device", self._device)
        dtype = model.options.get("dtype", self._dtype)
        try:
            return await self._models.get(
                model.source,
                lambda: load_blip(model.source, device, dtype),
                emit=emit,
                label=model.id,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise BackendError(f"{self.name}: could not load {model.source}: {exc}") from exc

    async def load(self, model: ModelRef) -> None:
        await self._loaded(model)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        prompt = request.input.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidInput("prompt must be a string")
        max_tokens = max_tokens_of(request.input, self._default_max_tokens)
        image = await asyncio.to_thread(decode_image, require(request.media, "image_url"))
        loaded = await self._loaded(request.model, emit)
        try:
            caption = await asyncio.to_thread(caption_image, loaded, image, prompt, max_tokens)
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"{self.name}: captioning failed: {exc!r}") from exc
        return EngineResult(
            output={"caption": caption.text, "model": request.model.id},
            usage=Usage(
                prompt_tokens=caption.prompt_tokens,
                completion_tokens=caption.completion_tokens,
                compute_seconds=caption.seconds,
            ),
        )

    async def health(self) -> bool:
        return True

    async def unload(self) -> None:
        if self._models.clear():
            await asyncio.to_thread(release_memory)


def create(config: BackendConfig, context: EngineContext) -> BlipCaptioner:
    """The ``blip-caption`` backend type."""
    return BlipCaptioner(config, context)
