"""The part every Whisper runtime shares: resident models, audio decoding, timing, output.

A runtime subclasses ``WhisperEngine`` with how to load a model and how to transcribe 16 kHz
mono samples with it; both run in worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineEvent,
    EngineRequest,
    EngineResult,
    ModelRef,
)
from gpubridge.engines.local import threadsafe_emit
from gpubridge.engines.media import decode_audio, require
from gpubridge.engines.resident_engine import ResidentEngine
from gpubridge.engines.speech.transcript import (
    TranscribeOptions,
    Transcript,
    tidy,
    transcribe_options,
    transcript_output,
    transcript_usage,
)

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Audio = NDArray[np.float32]

M = TypeVar("M")
SAMPLING_RATE = 16_000
Progress = Callable[[EngineEvent], None]

TEMPERATURE_STEP = 0.2


def temperature_schedule(start: float) -> tuple[float, ...]:
    """Whisper's fallback temperatures from ``start`` up to 1.0 in steps of 0.2: a window whose
    decoding looks degenerate (repetitive or unlikely) is decoded again, warmer."""
    steps = round((1.0 - start) / TEMPERATURE_STEP)
    return tuple(round(start + i * TEMPERATURE_STEP, 2) for i in range(steps + 1)) or (start,)


async def decode_input_audio(request: EngineRequest) -> Audio:
    """The job's ``audio_url`` input as 16 kHz mono float32 samples (decoded off the loop)."""
    media = require(request.media, "audio_url")
    return await asyncio.to_thread(decode_audio, media, SAMPLING_RATE)


class WhisperEngine(ResidentEngine[M]):
    """An ``Engine`` for the Whisper services, generic over a runtime's loaded model.

    Backend options: ``device``, ``max_new_tokens`` (per 30 s window; default the model's
    limit), ``temperature_fallback`` (decode degenerate windows again, warmer; default true),
    and the runtime's own.
    """

    runtime = "whisper"

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        limit = self.options.get("max_new_tokens")
        self.max_new_tokens: int | None = int(limit) if limit else None
        self.temperature_fallback = bool(self.options.get("temperature_fallback", True))

    # -- what a runtime provides (and ``load_model``) -------------------------------------
    def transcribe_audio(
        self, model: M, audio: Audio, options: TranscribeOptions, progress: Progress
    ) -> Transcript:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    def temperatures(self, options: TranscribeOptions) -> tuple[float, ...]:
        """The temperatures to decode with, in order of fallback."""
        if self.temperature_fallback:
            return temperature_schedule(options.temperature)
        return (options.temperature,)

    async def transcribe(
        self, model_ref: ModelRef, audio: Audio, options: TranscribeOptions, emit: Emit
    ) -> tuple[Transcript, float]:
        """The tidied transcript of ``audio`` and the seconds the decoding took."""
        model = await self.model(model_ref, emit)
        progress = threadsafe_emit(emit)
        return await self.timed(
            lambda: tidy(self.transcribe_audio(model, audio, options, progress)), "transcription"
        )

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        options = transcribe_options(request.input)
        audio = await decode_input_audio(request)
        transcript, seconds = await self.transcribe(request.model, audio, options, emit)
        return EngineResult(
            output=transcript_output(transcript, options),
            usage=transcript_usage(transcript, seconds),
        )
