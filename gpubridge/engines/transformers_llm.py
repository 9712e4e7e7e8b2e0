"""Local text generation with transformers (``AutoModelForCausalLM``), streamed token by token.

torch and transformers are imported inside the functions that need them; those run in worker
threads, so neither building this engine nor importing this module blocks the event loop.
Generation runs in a worker thread and hands each decoded piece to the event loop through
transformers' ``AsyncTextIteratorStreamer``.
"""

from __future__ import annotations

import asyncio
import threading
import time
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
from gpubridge.engines.cancellation import current_flag
from gpubridge.engines.inputs import Message, Sampling, chat_messages, message_text, sampling
from gpubridge.engines.local import pick_device, resolve_source
from gpubridge.engines.resident_engine import ResidentEngine
from gpubridge.engines.stops import StopScanner
from gpubridge.errors import BackendError

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_TOKENS = 256


@dataclass
class LoadedLM:
    """A tokenizer and causal LM ready on ``device`` (transformers' own types are too loose to
    check calls against, so both are ``Any``)."""

    tokenizer: Any
    model: Any
    device: str


@dataclass
class _Generated:
    completion_tokens: int
    ended_with_eos: bool
    seconds: float


def load_causal_lm(
    source: str, device: str | None, dtype: str | None, gguf_file: str | None = None
) -> LoadedLM:
    """Load tokenizer and model from ``source`` (a local directory or a hub id already cached).

    With ``gguf_file``, both come from that GGUF file in ``source`` (transformers de-quantizes
    it; the ``gguf`` package reads it).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = pick_device(device)
    path, local_only = resolve_source(source)
    extra: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only, **extra)
    torch_dtype = getattr(torch, dtype) if dtype and dtype != "auto" else dtype
    if torch_dtype is None:
        torch_dtype = "auto" if device.startswith("cuda") else torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=local_only, dtype=torch_dtype, **extra
    )
    model.to(device)
    model.eval()
    return LoadedLM(tokenizer=tokenizer, model=model, device=device)


def _prompt_ids(loaded: LoadedLM, messages: list[Message]) -> dict[str, torch.Tensor]:
    """Token ids for the conversation: the chat template if the tokenizer has one."""
    tokenizer = loaded.tokenizer
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(
            [{"role": m["role"], "content": message_text(m)} for m in messages],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
    else:
        if len(messages) == 1 or (len(messages) == 2 and messages[0]["role"] == "system"):
            text = "\n\n".join(message_text(m) for m in messages)
        else:
            lines = [f"{m['role']}: {message_text(m)}" for m in messages]
            text = "\n".join([*lines, "assistant:"])
        encoded = tokenizer(text, return_tensors="pt")
    return {k: v.to(loaded.device) for k, v in encoded.items()}


class AbortOnEvent:
    """A stopping criterion that ends generation once ``event`` is set (stop string, cancel)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.cancelled = current_flag()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> Any:
        import torch

        stop = self.event.is_set() or (self.cancelled is not None and self.cancelled.is_set())
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


def _generate(
    loaded: LoadedLM,
    inputs: dict[str, torch.Tensor],
    params: Sampling,
    max_tokens: int,
    streamer: Any,
    abort: threading.Event,
) -> _Generated:
    """Run ``generate`` (in a worker thread), feeding ``streamer``; the stream always ends."""
    try:
        return _generate_into(loaded, inputs, params, max_tokens, streamer, abort)
    except BaseException:
        streamer.end()
        raise


def sampling_options(
    max_tokens: int, temperature: float | None, top_p: float | None = None
) -> dict[str, Any]:
    """``generate`` arguments for a token limit and optional temperature (0: greedy) and top-p."""
    options: dict[str, Any] = {"max_new_tokens": max_tokens}
    if temperature is not None:
        if temperature <= 0:
            options["do_sample"] = False
        else:
            options.update(do_sample=True, temperature=temperature)
    if top_p is not None:
        options["top_p"] = top_p
    return options


def _ids(value: Any) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, list | tuple) else {int(value)}


def _generate_into(
    loaded: LoadedLM,
    inputs: dict[str, torch.Tensor],
    params: Sampling,
    max_tokens: int,
    streamer: Any,
    abort: threading.Event,
) -> _Generated:
    import torch
    from transformers import StoppingCriteriaList

    options = sampling_options(max_tokens, params.temperature, params.top_p)
    tokenizer = loaded.tokenizer
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id
    started = time.perf_counter()
    if params.seed is not None:
        # Seeds torch's global generator: exact only while one generation runs at a time.
        torch.manual_seed(params.seed)
    with torch.inference_mode():
        output = loaded.model.generate(
            **inputs,
            **options,
            pad_token_id=pad,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([AbortOnEvent(abort)]),
        )
    seconds = time.perf_counter() - started
    new_tokens = output[0, inputs["input_ids"].shape[1] :].tolist()
    eos = _ids(tokenizer.eos_token_id) | _ids(loaded.model.generation_config.eos_token_id)
    return _Generated(
        completion_tokens=len(new_tokens),
        ended_with_eos=bool(new_tokens) and new_tokens[-1] in eos,
        seconds=seconds,
    )


class TransformersLLM(ResidentEngine[LoadedLM]):
    """An ``Engine`` generating text with a local causal LM; models load once and stay.

    Options: ``device``, ``dtype``, ``max_tokens`` (default limit); a model's ``gguf_file``.
    """

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        self._default_max_tokens = int(self.options.get("max_tokens", DEFAULT_MAX_TOKENS))

    def load_model(self, ref: ModelRef) -> LoadedLM:
        return load_causal_lm(
            ref.source, self.device, self.options.get("dtype"), ref.options.get("gguf_file")
        )

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        messages = chat_messages(request.input)
        params = sampling(request.input)
        loaded = await self.model(request.model, emit)
        inputs = await asyncio.to_thread(_prompt_ids, loaded, messages)
        max_tokens = params.max_tokens or self._default_max_tokens

        from transformers import AsyncTextIteratorStreamer

        streamer = AsyncTextIteratorStreamer(
            loaded.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        abort = threading.Event()
        worker = asyncio.ensure_future(
            asyncio.to_thread(_generate, loaded, inputs, params, max_tokens, streamer, abort)
        )
        scanner = StopScanner(params.stop)
        pieces: list[str] = []
        try:
            async for piece in streamer:
                text = scanner.feed(piece)
                if text:
                    pieces.append(text)
                    await emit(EngineEvent("token", {"text": text}))
                if scanner.stopped:
                    abort.set()
            rest = scanner.flush()
            if rest:
                pieces.append(rest)
                await emit(EngineEvent("token", {"text": rest}))
            try:
                generated = await worker
            except Exception as exc:
                raise BackendError(f"{self.name}: generation failed: {exc!r}") from exc
        finally:
            if not worker.done():
                # Cancelled or failed while generating: stop the worker thread at its next token.
                abort.set()
                worker.add_done_callback(ignore_outcome)
        if scanner.stopped or generated.ended_with_eos:
            finish_reason = "stop"
        else:
            finish_reason = "length" if generated.completion_tokens >= max_tokens else "stop"
        return EngineResult(
            output={
                "text": "".join(pieces),
                "finish_reason": finish_reason,
                "model": request.model.id,
            },
            usage=Usage(
                prompt_tokens=int(inputs["input_ids"].shape[1]),
                completion_tokens=generated.completion_tokens,
                compute_seconds=generated.seconds,
            ),
        )


def ignore_outcome(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned worker's outcome so that its failure is not reported as unseen."""
    if not future.cancelled():
        future.exception()


def create(config: BackendConfig, context: EngineContext) -> TransformersLLM:
    """The ``transformers-llm`` backend type."""
    return TransformersLLM(config, context)
