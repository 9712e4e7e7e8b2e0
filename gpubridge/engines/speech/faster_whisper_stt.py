"""Whisper through faster-whisper (CTranslate2): segments, word timestamps, language detection.

faster-whisper and CTranslate2 are imported inside the functions, which run in worker threads.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import BackendConfig, EngineContext, ModelRef
from gpubridge.engines.local import pick_device, progress_event, resolve_source
from gpubridge.engines.speech.transcript import Segment, TranscribeOptions, Transcript, Word
from gpubridge.engines.speech.whisper_engine import (
    SAMPLING_RATE,
    Progress,
    WhisperEngine,
)
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from gpubridge.engines.speech.whisper_engine import Audio

CT2_SOURCE_OPTION = "ctranslate2_source"


def load_faster_whisper(
    source: str, device: str | None, compute_type: str, cpu_threads: int, num_workers: int = 1
) -> WhisperModel:
    """A CTranslate2 Whisper model from a directory, a ``package:`` source or a cached hub id."""
    from faster_whisper import WhisperModel

    location, local_only = resolve_source(source)
    return WhisperModel(
        location,
        device=pick_device(device),
        compute_type=compute_type,
        cpu_threads=cpu_threads,
        num_workers=num_workers,
        local_files_only=local_only,
    )


class FasterWhisperEngine(WhisperEngine["WhisperModel"]):
    """An ``Engine`` transcribing with faster-whisper.

    A model's weights are its ``ctranslate2_source`` option when given (a CTranslate2
    conversion of the same checkpoint), else its ``source``. Backend options: ``device``,
    ``compute_type`` (``default`` keeps the saved precision; ``int8_float16``, ``int8``...),
    ``cpu_threads``, ``num_workers`` (transcriptions run in parallel, default 1),
    ``beam_size`` (default 5), ``vad_filter`` (skip silence with the bundled
    Silero VAD, default false), ``max_new_tokens``, ``no_speech_threshold``.
    """

    runtime = "faster-whisper"

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        self.compute_type = str(self.options.get("compute_type", "default"))
        self.cpu_threads = int(self.options.get("cpu_threads", 0))
        self.num_workers = int(self.options.get("num_workers", 1))
        self.beam_size = int(self.options.get("beam_size", 5))
        self.vad_filter = bool(self.options.get("vad_filter", False))
        threshold = self.options.get("no_speech_threshold", 0.6)
        self.no_speech_threshold: float | None = None if threshold is None else float(threshold)

    def source_of(self, model: ModelRef) -> str:
        return str(model.options.get(CT2_SOURCE_OPTION) or model.source)

    def load_model(self, ref: ModelRef) -> WhisperModel:
        return load_faster_whisper(
            self.source_of(ref), self.device, self.compute_type, self.cpu_threads, self.num_workers
        )

    def transcribe_audio(
        self, model: WhisperModel, audio: Audio, options: TranscribeOptions, progress: Progress
    ) -> Transcript:
        duration = len(audio) / SAMPLING_RATE
        if options.language and options.language not in model.supported_languages:
            raise InvalidInput(f"language {options.language!r} is not supported by this model")
        segments, info = model.transcribe(
            audio,
            language=options.language,
            task=options.task,
            initial_prompt=options.prompt,
            temperature=list(self.temperatures(options)),
            word_timestamps=options.words,
            without_timestamps=options.timestamps == "none",
            beam_size=self.beam_size,
            vad_filter=self.vad_filter,
            max_new_tokens=self.max_new_tokens,
            no_speech_threshold=self.no_speech_threshold,
        )
        total = max(1, math.ceil(duration))
        result = Transcript(
            language=info.language,
            duration_seconds=duration,
            language_probability=None if options.language else float(info.language_probability),
        )
        step = 0
        for segment in segments:  # decoding happens while iterating
            result.generated_tokens += len(segment.tokens)
            result.segments.append(_segment(segment, options))
            step = min(total, math.ceil(segment.end))
            progress(progress_event("transcribing", step, total))
        if step < total:
            progress(progress_event("transcribing", total, total))
        return result


def _segment(segment: Any, options: TranscribeOptions) -> Segment:
    words = None
    if options.words:
        words = [
            Word(float(w.start), float(w.end), str(w.word).strip(), float(w.probability))
            for w in segment.words or []
        ]
    return Segment(float(segment.start), float(segment.end), str(segment.text), words)


def create(config: BackendConfig, context: EngineContext) -> FasterWhisperEngine:
    """The ``faster-whisper`` backend type."""
    return FasterWhisperEngine(config, context)
