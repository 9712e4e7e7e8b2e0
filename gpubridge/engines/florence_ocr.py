"""Text recognition with Florence-2 through transformers: the ``<OCR>`` task (the text) and
``<OCR_WITH_REGION>`` (each line with its quadrilateral). Loading and generation run in worker
threads.
"""

from __future__ import annotations

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
    from_pretrained,
    pick_device,
    progress_event,
    resolve_source,
    threadsafe_emit,
)
from gpubridge.engines.media import decode_image, require
from gpubridge.engines.resident_engine import ResidentEngine, pick_dtype
from gpubridge.errors import InvalidInput

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
    from transformers import AutoModelForImageTextToText, AutoProcessor

    location, local_only = resolve_source(source)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    processor = from_pretrained(AutoProcessor, location, local_files_only=local_only)
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
    )


class FlorenceOCR(ResidentEngine[LoadedFlorence]):
    """An ``Engine`` reading text in images with a local Florence-2 model.

    Options (backend, overridden per model): ``device``, ``dtype`` (default float16 on CUDA,
    float32 on CPU), ``max_new_tokens`` (default 1024), ``num_beams`` (default 3).
    """

    def load_model(self, ref: ModelRef) -> LoadedFlorence:
        return load_florence(ref.source, self.option(ref, "device"), self.option(ref, "dtype"))

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        task = str(request.input.get("task") or "ocr")
        if task not in TASKS:
            raise InvalidInput(
                f"task must be one of {sorted(TASKS)}",
                violations=[{"path": "task", "message": f"one of {sorted(TASKS)}"}],
            )
        image = decode_image(require(request.media, "image_url"))
        limit = int(self.option(request.model, "max_new_tokens", 1024))
        generation = {
            "max_new_tokens": limit,
            "num_beams": int(self.option(request.model, "num_beams", 3)),
        }
        loaded = await self.model(request.model, emit)
        send = threadsafe_emit(emit)

        def report(tokens: int) -> None:
            send(progress_event("generating", tokens, limit))

        done, seconds = await self.timed(
            lambda: _read(loaded, image, task, generation, report), "text recognition"
        )
        return EngineResult(
            output=done.output,
            usage=Usage(
                prompt_tokens=done.prompt_tokens,
                completion_tokens=done.completion_tokens,
                compute_seconds=seconds,
            ),
        )


def create(config: BackendConfig, context: EngineContext) -> FlorenceOCR:
    """The ``florence-ocr`` backend type."""
    return FlorenceOCR(config, context)
