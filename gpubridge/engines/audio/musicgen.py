"""Music from a text description with Meta MusicGen through transformers
(``MusicgenForConditionalGeneration`` + its processor: a T5 text encoder, EnCodec audio)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpubridge.engines.audio.common import StepCounter, clip_result, output_format, required_text
from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineEvent,
    EngineRequest,
    EngineResult,
    ModelRef,
)
from gpubridge.engines.diffusion.generation import pick_seed
from gpubridge.engines.local import from_pretrained, pick_device, resolve_source
from gpubridge.engines.resident_engine import ResidentEngine
from gpubridge.errors import InvalidInput

MUSIC_FORMATS = ("wav", "mp3", "flac")
MAX_SECONDS = 30.0


@dataclass
class MusicgenBundle:
    """A loaded MusicGen model with its processor and audio timing."""

    model: Any
    processor: Any
    sampling_rate: int
    frame_rate: int
    num_codebooks: int


def load_musicgen(source: str, device: str | None) -> MusicgenBundle:
    """Load the model and processor from a directory or a cached hub id."""
    from transformers import AutoProcessor, MusicgenForConditionalGeneration

    location, local_only = resolve_source(source)
    processor = from_pretrained(AutoProcessor, location, local_files_only=local_only)
    model: Any = MusicgenForConditionalGeneration.from_pretrained(
        location, local_files_only=local_only
    )
    model = model.to(pick_device(device)).eval()
    encoder = model.config.audio_encoder
    return MusicgenBundle(
        model,
        processor,
        int(encoder.sampling_rate),
        int(encoder.frame_rate),
        int(model.decoder.num_codebooks),
    )


def counting_processor(counter: StepCounter) -> Any:
    """A logits processor that leaves scores alone and counts one step per call."""
    from transformers import LogitsProcessor

    class Counting(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            counter.step()
            return scores

    return Counting()


def token_budget(bundle: MusicgenBundle, seconds: float) -> int:
    """Decoder steps for ``seconds`` of audio (the codebook delay pattern adds a few)."""
    return math.ceil(seconds * bundle.frame_rate) + bundle.num_codebooks - 1


def generate_music(
    bundle: MusicgenBundle,
    prompt: str,
    seconds: float,
    sampling: dict[str, Any],
    seed: int,
    send: Callable[[EngineEvent], None],
) -> Any:
    """Generate about ``seconds`` of mono audio; progress is one event every few steps (a
    logits processor counts them: MusicGen's ``generate`` does not feed streamers)."""
    import torch
    from transformers import LogitsProcessorList

    steps = token_budget(bundle, seconds)
    inputs = bundle.processor(text=[prompt], padding=True, return_tensors="pt")
    inputs = inputs.to(bundle.model.device)
    streamer = StepCounter(send, "generating", steps, every=max(steps // 20, 1))
    torch.manual_seed(seed)
    with torch.inference_mode():
        audio = bundle.model.generate(
            **inputs,
            max_new_tokens=steps,
            logits_processor=LogitsProcessorList([counting_processor(streamer)]),
            **sampling,
        )
    streamer.end()
    samples = audio[0].detach().float().cpu().numpy()
    samples = samples.mean(axis=0) if samples.ndim == 2 else samples.reshape(-1)
    return samples[: round(seconds * bundle.sampling_rate)]


def sampling_options(payload: dict[str, Any]) -> dict[str, Any]:
    """``generate`` keyword arguments: sampling (temperature, top_k) and classifier-free
    guidance."""
    temperature = float(payload.get("temperature", 1.0))
    options: dict[str, Any] = {"guidance_scale": float(payload.get("guidance_scale", 3.0))}
    if temperature > 0:
        options.update(
            do_sample=True, temperature=temperature, top_k=int(payload.get("top_k", 250))
        )
    else:
        options["do_sample"] = False
    return options


class MusicgenEngine(ResidentEngine[MusicgenBundle]):
    """An ``Engine`` composing music with MusicGen (``facebook/musicgen-small``, ``-medium``).

    Options: ``device``.
    """

    def load_model(self, ref: ModelRef) -> MusicgenBundle:
        return load_musicgen(ref.source, self.device)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        payload = request.input
        prompt = required_text(payload, "prompt")
        seconds = float(payload.get("duration_seconds", 8))
        if not 0 < seconds <= MAX_SECONDS:
            raise InvalidInput(f"duration_seconds must be in (0, {MAX_SECONDS:g}]")
        fmt = output_format(payload, MUSIC_FORMATS)
        sampling = sampling_options(payload)
        seed = pick_seed(payload.get("seed"))
        bundle = await self.model(request.model, emit)
        return await clip_result(
            self.name,
            emit,
            lambda send: generate_music(bundle, prompt, seconds, sampling, seed, send),
            "MusicGen generation",
            bundle.sampling_rate,
            fmt,
        )


def create(config: BackendConfig, context: EngineContext) -> MusicgenEngine:
    """The ``musicgen`` backend type."""
    return MusicgenEngine(config, context)
