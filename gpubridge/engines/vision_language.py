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
    Usage,
)
from gpubridge.engines.captioner import torch_dtype
from gpubridge.engines.local import pick_device, release_memory, resolve_source, threadsafe_emit
from gpubridge.engines.media import decode_image, require
from gpubridge.engines.remote_code import load_remote_code_model
from gpubridge.engines.residency import Resident
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


@dataclass
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def load_vlm(source: str, options: dict[str, Any]) -> LoadedVLM:
    """Load the model and processor of ``source``, honouring ``trust_remote_code``/``revision``."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    device = pick_device(options.get("device"))
    chosen = torch_dtype(options.get("dtype"), device)
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


def _generation_options(max_tokens: int, temperature: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {"max_new_tokens": max_tokens}
    if temperature is not None:
        if temperature <= 0:
            options["do_sample"] = False
        else:
            options.update(do_sample=True, temperature=temperature)
    return options


class _Abort:
    """A stopping criterion that ends generation once ``event`` is set (the job was cancelled)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), device=input_ids.device)


def generate_answer(
    loaded: LoadedVLM,
    image: Image.Image,
    prompt: str,
    max_tokens: int,
    temperature: float | None,
    send: Callable[[EngineEvent], None],
    abort: threading.Event,
) -> Answer:
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
                    **_generation_options(max_tokens, temperature),
                    pad_token_id=pad,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_Abort(abort)]),
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
    return Answer("".join(pieces), prompt_tokens, completion, seconds)


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
) -> Answer:
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
    return Answer(text, _count_tokens(model, prompt), completion or len(pieces), seconds)


class VisionLanguage:
    """An ``Engine`` answering questions about images; models load once and stay."""

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        self.name = config.name
        self._options: dict[str, Any] = {
            key: config.options[key] for key in ("device", "dtype") if key in config.options
        }
        self._default_max_tokens = int(config.options.get("max_tokens", DEFAULT_MAX_TOKENS))
        cache = context.model_cache() if context is not None else None
        self._models: Resident[LoadedVLM] = Resident(cache, config.name)

    async def _loaded(self, model: ModelRef, emit: Emit | None = None) -> LoadedVLM:
        options: dict[str, Any] = {**self._options, **model.options}
        try:
            return await self._models.get(
                model.source, lambda: load_vlm(model.source, options), emit=emit, label=model.id
            )
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            raise BackendError(f"{self.name}: could not load {model.source}: {exc}") from exc

    async def load(self, model: ModelRef) -> None:
        await self._loaded(model)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        data = request.input
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput("prompt is required", violations=[{"path": "prompt"}])
        max_tokens = data.get("max_tokens", self._default_max_tokens)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise InvalidInput("max_tokens must be an integer")
        if not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
            raise InvalidInput(f"max_tokens must be from 1 to {MAX_TOKENS_LIMIT}")
        temperature = data.get("temperature")
        if temperature is not None and not isinstance(temperature, int | float):
            raise InvalidInput("temperature must be a number")
        image = await asyncio.to_thread(decode_image, require(request.media, "image_url"))
        loaded = await self._loaded(request.model, emit)
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
            worker.add_done_callback(_ignore_outcome)
            raise
        except (RuntimeError, ValueError, TypeError) as exc:
            raise BackendError(f"{self.name}: generation failed: {exc!r}") from exc
        return EngineResult(
            output={"text": answer.text, "model": request.model.id},
            usage=Usage(
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                compute_seconds=answer.seconds,
            ),
        )

    async def health(self) -> bool:
        return True

    async def unload(self) -> None:
        if self._models.clear():
            await asyncio.to_thread(release_memory)


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def create(config: BackendConfig, context: EngineContext) -> VisionLanguage:
    """The ``transformers-vlm`` backend type."""
    return VisionLanguage(config, context)
