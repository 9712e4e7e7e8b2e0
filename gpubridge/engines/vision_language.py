"""Visual question answering with transformers vision-language models, streamed token by token.

Models transformers supports natively load with ``AutoModelForImageTextToText`` and
``AutoProcessor``; the question goes through the processor's chat template as an image part and
a text part. Models shipped as remote code (``trust_remote_code``, pinned by ``revision``) that
offer Moondream's ``query(image, question, stream=, settings=)`` API are loaded through
``remote_code`` and asked through that API. Catalog model ``options``: ``trust_remote_code``,
``revision``, ``device``, ``dtype``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineEvent,
    EngineRequest,
    EngineResult,
    ModelRef,
)
from gpubridge.engines.captioner import max_tokens_of
from gpubridge.engines.local import pick_device, resolve_source, threadsafe_emit
from gpubridge.engines.media import decode_image, require
from gpubridge.engines.remote_code import load_remote_code_model
from gpubridge.engines.resident_engine import GeneratedText, ResidentEngine, pick_dtype
from gpubridge.engines.transformers_llm import AbortOnEvent, ignore_outcome, sampling_options
from gpubridge.errors import BackendError, InvalidInput

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_MAX_TOKENS = 256
MAX_TOKENS_LIMIT = 2048


@dataclass
class LoadedVLM:
    """A vision-language model ready on ``device``; ``processor`` is None for query-API models."""

    processor: Any
    model: Any
    device: str
    dtype: Any


def load_vlm(source: str, options: dict[str, Any]) -> LoadedVLM:
    """Load the model and processor of ``source``, honouring ``trust_remote_code``/``revision``."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    device = pick_device(options.get("device"))
    chosen = pick_dtype(options.get("dtype"), device)
    path, local_only = resolve_source(source)
    trust = bool(options.get("trust_remote_code", False))
    revision = options.get("revision")
    hub: dict[str, Any] = {"local_files_only": local_only, "trust_remote_code": trust}
    if revision:
        hub["revision"] = str(revision)
    config = AutoConfig.from_pretrained(path, **hub)
    auto_map = getattr(config, "auto_map", None) or {}
    if (
        trust
        and "AutoModelForImageTextToText" not in auto_map
        and "AutoModelForCausalLM" in auto_map
    ):
        model = load_remote_code_model(
            path, config, chosen, local_only=local_only, revision=hub.get("revision")
        )
        if not callable(getattr(model, "query", None)):
            raise ValueError(f"{source}: remote code without a query(image, question) method")
        processor = None
    else:
        auto: Any = AutoProcessor
        processor = auto.from_pretrained(path, **hub)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=chosen, **hub)
    model.to(device)
    model.eval()
    return LoadedVLM(processor=processor, model=model, device=device, dtype=chosen)


def _prompt_text(processor: Any, prompt: str) -> str:
    if getattr(processor, "chat_template", None):
        content = [{"type": "image"}, {"type": "text", "text": prompt}]
        text: str = processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        return text
    return f"{getattr(processor, 'image_token', None) or '<image>'}\n{prompt}"


def generate_answer(
    loaded: LoadedVLM,
    image: Image.Image,
    prompt: str,
    max_tokens: int,
    temperature: float | None,
    send: Callable[[EngineEvent], None],
    abort: threading.Event,
) -> GeneratedText:
    """Answer ``prompt`` about ``image`` (in a worker thread), sending each piece as a token."""
    if loaded.processor is None:
        return _query_answer(loaded, image, prompt, max_tokens, temperature, send)
    import torch
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    processor = loaded.processor
    inputs = processor(images=[image], text=_prompt_text(processor, prompt), return_tensors="pt")
    inputs = {
        k: v.to(loaded.device, loaded.dtype if v.is_floating_point() else None)
        for k, v in inputs.items()
    }
    tokenizer = processor.tokenizer
    streamer: Any = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            with torch.inference_mode():
                outcome["output"] = loaded.model.generate(
                    **inputs,
                    **sampling_options(max_tokens, temperature),
                    pad_token_id=pad,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([AbortOnEvent(abort)]),
                )
        except BaseException as exc:
            outcome["error"] = exc
            streamer.end()

    started = time.perf_counter()
    worker = threading.Thread(target=run, name="vlm-generate", daemon=True)
    worker.start()
    pieces = []
    for piece in streamer:
        if piece:
            pieces.append(piece)
            send(EngineEvent("token", {"text": piece}))
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    seconds = time.perf_counter() - started
    prompt_tokens = int(inputs["input_ids"].shape[1])
    completion = int(outcome["output"].shape[1]) - prompt_tokens
    return GeneratedText("".join(pieces), prompt_tokens, completion, seconds)


def _count_tokens(model: Any, text: str) -> int:
    tokenizer = getattr(model, "tokenizer", None) or getattr(
        getattr(model, "model", None), "tokenizer", None
    )
    if tokenizer is None or not text:
        return 0
    encoded = tokenizer.encode(text)
    return len(getattr(encoded, "ids", encoded))


def _query_answer(
    loaded: LoadedVLM,
    image: Image.Image,
    prompt: str,
    max_tokens: int,
    temperature: float | None,
    send: Callable[[EngineEvent], None],
) -> GeneratedText:
    import torch

    settings: dict[str, Any] = {"max_tokens": max_tokens}
    if temperature is not None:
        settings["temperature"] = temperature
    started = time.perf_counter()
    with torch.inference_mode():
        answer = loaded.model.query(image, prompt, stream=True, settings=settings)["answer"]
        pieces = [answer] if isinstance(answer, str) else []
        if isinstance(answer, str):
            send(EngineEvent("token", {"text": answer}))
        else:
            for piece in answer:
                pieces.append(piece)
                send(EngineEvent("token", {"text": piece}))
    text = "".join(pieces)
    seconds = time.perf_counter() - started
    model = loaded.model
    completion = _count_tokens(model, text) if text else 0
    # Without a tokenizer to count with, each streamed piece counts as one token.
    return GeneratedText(text, _count_tokens(model, prompt), completion or len(pieces), seconds)


class VisionLanguage(ResidentEngine[LoadedVLM]):
    """An ``Engine`` answering questions about images; models load once and stay.

    Backend options: ``device``, ``dtype`` (a model's options override them), ``max_tokens``.
    """

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        self._default_max_tokens = int(self.options.get("max_tokens", DEFAULT_MAX_TOKENS))

    def load_model(self, ref: ModelRef) -> LoadedVLM:
        backend: dict[str, Any] = {
            key: self.options[key] for key in ("device", "dtype") if key in self.options
        }
        return load_vlm(ref.source, {**backend, **ref.options})

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        data = request.input
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput("prompt is required", violations=[{"path": "prompt"}])
        max_tokens = max_tokens_of(data, self._default_max_tokens, MAX_TOKENS_LIMIT)
        temperature = data.get("temperature")
        if temperature is not None and not isinstance(temperature, int | float):
            raise InvalidInput("temperature must be a number")
        image = await asyncio.to_thread(decode_image, require(request.media, "image_url"))
        loaded = await self.model(request.model, emit)
        abort = threading.Event()
        worker = asyncio.ensure_future(
            asyncio.to_thread(
                generate_answer,
                loaded,
                image,
                prompt,
                max_tokens,
                None if temperature is None else float(temperature),
                threadsafe_emit(emit),
                abort,
            )
        )
        try:
            answer = await asyncio.shield(worker)
        except asyncio.CancelledError:
            abort.set()
            worker.add_done_callback(ignore_outcome)
            raise
        except (RuntimeError, ValueError, TypeError) as exc:
            raise BackendError(f"{self.name}: generation failed: {exc!r}") from exc
        return EngineResult(
            output={"text": answer.text, "model": request.model.id}, usage=answer.usage()
        )


def create(config: BackendConfig, context: EngineContext) -> VisionLanguage:
    """The ``transformers-vlm`` backend type."""
    return VisionLanguage(config, context)
