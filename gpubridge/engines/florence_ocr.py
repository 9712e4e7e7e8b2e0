"""Text recognition with Florence-2 through transformers: the ``<OCR>`` task (the text) and
``<OCR_WITH_REGION>`` (each line with its quadrilateral). Loading and generation run in worker
threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
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
from gpubridge.engines.local import (
    pick_device,
    progress_event,
    release_memory,
    resolve_source,
    threadsafe_emit,
)
from gpubridge.engines.media import decode_image, require
from gpubridge.engines.residency import Resident
from gpubridge.errors import BackendError, InvalidInput

if TYPE_CHECKING:
    import torch
    from PIL import Image

TASKS = {"ocr": "<OCR>", "ocr_with_region": "<OCR_WITH_REGION>"}
PROGRESS_EVERY = 16


@dataclass
class LoadedFlorence:
    """A Florence-2 model with its processor (prompts, image preprocessing, post-processing)."""

    model: Any
    processor: Any
    device: str
    dtype: torch.dtype


def load_florence(source: str, device: str | None, dtype: str | None) -> LoadedFlorence:
    """Load a native-format Florence-2 checkpoint (``Florence2ForConditionalGeneration``, which
    ``AutoModelForImageTextToText`` picks from its config)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    location, local_only = resolve_source(source)
    device = pick_device(device)
    if dtype:
        torch_dtype = getattr(torch, dtype)
    else:
        torch_dtype = torch.float16 if device.startswith("cuda") else torch.float32
    processor = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
        location, local_files_only=local_only
    )
    model: Any = AutoModelForImageTextToText.from_pretrained(
        location, local_files_only=local_only, dtype=torch_dtype
    )
    parse_config = processor.post_processor.parse_task_config
    for kind in ("pure_text", "ocr"):
        parse_config.setdefault(kind, {})
    return LoadedFlorence(model.to(device).eval(), processor, device, torch_dtype)


class _Progress:
    """A stopping criterion that never stops: it reports the decoded length as progress."""

    def __init__(self, report: Callable[[int], None], prompt_length: int) -> None:
        self.report = report
        self.start = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> Any:
        import torch

        length = int(input_ids.shape[-1]) - self.start
        if length > 0 and length % PROGRESS_EVERY == 0:
            self.report(length)
        return torch.zeros((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)


@dataclass
class _Read:
    output: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def regions_from(parsed: dict[str, Any]) -> list[dict[str, Any]]:
    """Florence-2 ``quad_boxes``/``labels`` as ``[{"text", "quad", "box"}]`` in pixels."""
    regions = []
    for quad, label in zip(parsed.get("quad_boxes", []), parsed.get("labels", []), strict=False):
        xs, ys = [float(v) for v in quad[0::2]], [float(v) for v in quad[1::2]]
        regions.append(
            {
                "text": str(label).strip(),
                "quad": [float(v) for v in quad],
                "box": [min(xs), min(ys), max(xs), max(ys)],
            }
        )
    return regions


def _read(
    loaded: LoadedFlorence,
    image: Image.Image,
    task: str,
    generation: dict[str, Any],
    report: Callable[[int], None],
) -> _Read:
    import torch
    from transformers import StoppingCriteriaList

    prompt = TASKS[task]
    processor = loaded.processor
    started = time.perf_counter()
    inputs = processor(text=prompt, images=image, return_tensors="pt")
    inputs = {key: value.to(loaded.device) for key, value in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(loaded.dtype)
    progress = _Progress(report, 1)
    with torch.inference_mode():
        generated = loaded.model.generate(
            **inputs,
            do_sample=False,
            stopping_criteria=StoppingCriteriaList([progress]),
            **generation,
        )
    sequence = generated[0]
    raw = processor.batch_decode(generated, skip_special_tokens=False)[0]
    parsed = processor.post_process_generation(raw, task=prompt, image_size=image.size)[prompt]
    if isinstance(parsed, dict):
        regions = regions_from(parsed)
        text = "\n".join(r["text"] for r in regions if r["text"])
    else:
        regions, text = [], str(parsed).strip()
    pad = processor.tokenizer.pad_token_id
    completion = int((sequence[1:] != pad).sum()) if pad is not None else len(sequence) - 1
    return _Read(
        {
            "task": task,
            "text": text,
            "regions": regions,
            "width": image.width,
            "height": image.height,
        },
        int(inputs["input_ids"].shape[-1]),
        completion,
        time.perf_counter() - started,
    )


class FlorenceOCR:
    """An ``Engine`` reading text in images with a local Florence-2 model.

    Options (backend, overridden per model): ``device``, ``dtype`` (default float16 on CUDA,
    float32 on CPU), ``max_new_tokens`` (default 1024), ``num_beams`` (default 3).
    """

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        self.name = config.name
        self._options = dict(config.options)
        cache = context.model_cache() if context is not None else None
        self._models: Resident[LoadedFlorence] = Resident(cache, config.name)

    def _option(self, model: ModelRef, key: str, default: Any = None) -> Any:
        return model.options.get(key, self._options.get(key, default))

    async def _loaded(self, model: ModelRef, emit: Emit | None = None) -> LoadedFlorence:
        device, dtype = self._option(model, "device"), self._option(model, "dtype")
        try:
            return await self._models.get(
                model.source,
                lambda: load_florence(model.source, device, dtype),
                emit=emit,
                label=model.id,
            )
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
            raise BackendError(f"{self.name}: could not load {model.source}: {exc}") from exc

    async def load(self, model: ModelRef) -> None:
        await self._loaded(model)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        task = str(request.input.get("task") or "ocr")
        if task not in TASKS:
            raise InvalidInput(
                f"task must be one of {sorted(TASKS)}",
                violations=[{"path": "task", "message": f"one of {sorted(TASKS)}"}],
            )
        image = decode_image(require(request.media, "image_url"))
        limit = int(self._option(request.model, "max_new_tokens", 1024))
        generation = {
            "max_new_tokens": limit,
            "num_beams": int(self._option(request.model, "num_beams", 3)),
        }
        loaded = await self._loaded(request.model, emit)
        send = threadsafe_emit(emit)

        def report(tokens: int) -> None:
            send(progress_event("generating", tokens, limit))

        try:
            done = await asyncio.to_thread(_read, loaded, image, task, generation, report)
        except Exception as exc:
            raise BackendError(f"{self.name}: text recognition failed: {exc!r}") from exc
        return EngineResult(
            output=done.output,
            usage=Usage(
                prompt_tokens=done.prompt_tokens,
                completion_tokens=done.completion_tokens,
                compute_seconds=done.seconds,
            ),
        )

    async def health(self) -> bool:
        return True

    async def unload(self) -> None:
        if self._models.clear():
            await asyncio.to_thread(release_memory)


def create(config: BackendConfig, context: EngineContext) -> FlorenceOCR:
    """The ``florence-ocr`` backend type."""
    return FlorenceOCR(config, context)
