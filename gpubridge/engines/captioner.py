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
)
from gpubridge.engines.local import pick_device, resolve_source
from gpubridge.engines.media import decode_image, require
from gpubridge.engines.resident_engine import GeneratedText, ResidentEngine, pick_dtype
from gpubridge.errors import InvalidInput

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


def load_blip(source: str, device: str | None = None, dtype: str | None = None) -> LoadedBlip:
    """Load a BLIP captioner from ``source`` (a local directory or a cached hub id)."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    device = pick_device(device)
    path, local_only = resolve_source(source)
    chosen = pick_dtype(dtype, device)
    processor = BlipProcessor.from_pretrained(path, local_files_only=local_only)
    model: Any = BlipForConditionalGeneration.from_pretrained(
        path, local_files_only=local_only, dtype=chosen
    )
    model.to(device)
    model.eval()
    return LoadedBlip(processor=processor, model=model, device=device, dtype=chosen)


def caption_image(
    loaded: LoadedBlip, image: Image.Image, prompt: str | None, max_tokens: int
) -> GeneratedText:
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
    return GeneratedText(
        text=caption,
        prompt_tokens=prompt_tokens,
        completion_tokens=max(int(output.shape[1]) - prompt_tokens, 0),
        seconds=seconds,
    )


def max_tokens_of(data: dict[str, Any], default: int, limit: int = MAX_TOKENS_LIMIT) -> int:
    """The request's ``max_tokens`` (1 to ``limit``), or ``default``."""
    value = data.get("max_tokens", default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise InvalidInput(f"max_tokens must be an integer from 1 to {limit}")
    return value


class BlipCaptioner(ResidentEngine[LoadedBlip]):
    """An ``Engine`` describing images in one sentence with BLIP; models load once and stay.

    Options (backend, overridden per model): ``device``, ``dtype``; backend: ``max_tokens``.
    """

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        self._default_max_tokens = int(self.options.get("max_tokens", DEFAULT_MAX_TOKENS))

    def load_model(self, ref: ModelRef) -> LoadedBlip:
        return load_blip(ref.source, self.option(ref, "device"), self.option(ref, "dtype"))

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        prompt = request.input.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidInput("prompt must be a string")
        max_tokens = max_tokens_of(request.input, self._default_max_tokens)
        image = await asyncio.to_thread(decode_image, require(request.media, "image_url"))
        loaded = await self.model(request.model, emit)
        caption, _ = await self.timed(
            lambda: caption_image(loaded, image, prompt, max_tokens), "captioning"
        )
        return EngineResult(
            output={"caption": caption.text, "model": request.model.id}, usage=caption.usage()
        )


def create(config: BackendConfig, context: EngineContext) -> BlipCaptioner:
    """The ``blip-caption`` backend type."""
    return BlipCaptioner(config, context)
