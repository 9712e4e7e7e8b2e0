"""Diarized speech-to-text: a Whisper transcript (faster-whisper or transformers) with a speaker
label on every segment and word.

Speech regions (Silero or energy VAD) are cut into short windows, each window gets an x-vector
speaker embedding, the windows are clustered into speakers, and each segment and word takes the
speaker whose turns overlap it most.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
    ModelRef,
)
from gpubridge.engines.local import progress_event, threadsafe_emit
from gpubridge.engines.resident_engine import ResidentEngine
from gpubridge.engines.speech import speakers as spk
from gpubridge.engines.speech.transcript import (
    Transcript,
    transcribe_options,
    transcript_output,
    transcript_usage,
)
from gpubridge.engines.speech.vad import VadMethod, speech_regions
from gpubridge.engines.speech.whisper_engine import (
    SAMPLING_RATE,
    Progress,
    WhisperEngine,
    decode_input_audio,
)
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    from gpubridge.engines.speech.whisper_engine import Audio

DEFAULT_SPEAKER_MODEL = "microsoft/wavlm-base-plus-sv"


def speaker_counts(data: dict[str, Any]) -> spk.SpeakerCounts:
    """``num_speakers`` / ``min_speakers`` / ``max_speakers`` of a job's input, checked."""
    exact, low, high = (data.get(k) for k in ("num_speakers", "min_speakers", "max_speakers"))
    if low is not None and high is not None and int(low) > int(high):
        raise InvalidInput("min_speakers must not exceed max_speakers")
    return spk.SpeakerCounts(
        exact=int(exact) if exact else None,
        minimum=int(low) if low else 1,
        maximum=int(high) if high else None,
    )


def label(speaker: int) -> str:
    return f"SPEAKER_{speaker:02d}"


def speaker_of(start: float, end: float, turns: list[spk.Turn]) -> int | None:
    """The speaker whose turns overlap ``[start, end]`` most, else the nearest turn's."""
    if not turns:
        return None
    overlap: dict[int, float] = {}
    for turn in turns:
        shared = min(end, turn.end) - max(start, turn.start)
        if shared > 0:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
    if overlap:
        return max(overlap, key=lambda s: overlap[s])
    middle = (start + end) / 2
    nearest = min(turns, key=lambda t: min(abs(middle - t.start), abs(middle - t.end)))
    return nearest.speaker


def assign(transcript: Transcript, turns: list[spk.Turn]) -> None:
    """Label every segment and word of ``transcript`` with a speaker."""
    for segment in transcript.segments:
        for word in segment.words or []:
            found = speaker_of(word.start, word.end, turns)
            word.speaker = label(found) if found is not None else None
        found = speaker_of(segment.start, segment.end, turns)
        segment.speaker = label(found) if found is not None else None


def speaker_summary(turns: list[spk.Turn]) -> list[dict[str, Any]]:
    """Each speaker with the seconds of audio attributed to them."""
    seconds: dict[int, float] = {}
    for turn in turns:
        seconds[turn.speaker] = seconds.get(turn.speaker, 0.0) + turn.end - turn.start
    return [{"id": label(s), "speaking_seconds": round(seconds[s], 3)} for s in sorted(seconds)]


class DiarizedWhisper(ResidentEngine[spk.SpeakerModel]):
    """An ``Engine`` for diarized transcription.

    Backend options: ``transcriber`` (``faster-whisper``, default, or
    ``transformers-whisper``) and that runtime's options; ``speaker_model`` (default
    ``microsoft/wavlm-base-plus-sv``; a model's ``speaker_model`` option wins); ``vad``
    (``silero``, default, or ``energy``); ``window_s`` (1.5) and ``hop_s`` (0.75) of the
    embedded windows; ``cluster_threshold`` (cosine distance that separates speakers when
    their number is not given, 0.3).
    """

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context, owner=f"{config.name}:speakers")
        options = config.options
        kind = options.get("transcriber", "faster-whisper")
        self.transcriber: WhisperEngine[Any] = _transcriber(kind, config, context)
        self.speaker_model = str(options.get("speaker_model", DEFAULT_SPEAKER_MODEL))
        self.vad = cast(VadMethod, options.get("vad", "silero"))
        self.window_s = float(options.get("window_s", 1.5))
        self.hop_s = float(options.get("hop_s", 0.75))
        self.threshold = float(options.get("cluster_threshold", 0.3))

    def source_of(self, ref: ModelRef) -> str:
        """The speaker embedding model of ``ref``."""
        return str(ref.options.get("speaker_model") or self.speaker_model)

    def load_model(self, ref: ModelRef) -> spk.SpeakerModel:
        return spk.load_speaker_model(self.source_of(ref), self.device)

    async def _speaker_model(self, model: ModelRef, emit: Emit | None) -> spk.SpeakerModel:
        return await self.resident(self.source_of(model), lambda: self.load_model(model), emit=emit)

    async def load(self, model: ModelRef) -> None:
        await self.transcriber.load(model)
        await self._speaker_model(model, None)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        options = transcribe_options(request.input, default_timestamps="word")
        diarize = bool(request.input.get("diarize", True))
        counts = speaker_counts(request.input)
        audio = await decode_input_audio(request)
        transcript, seconds = await self.transcriber.transcribe(request.model, audio, options, emit)
        turns: list[spk.Turn] = []
        if diarize:
            speaker_model = await self._speaker_model(request.model, emit)
            progress = threadsafe_emit(emit)
            heard = bool(transcript.segments)
            turns, diarizing = await self.timed(
                lambda: self._turns(speaker_model, audio, counts, heard, progress), "diarization"
            )
            assign(transcript, turns)
            seconds += diarizing
        output = transcript_output(transcript, options)
        output["speakers"] = speaker_summary(turns)
        return EngineResult(output=output, usage=transcript_usage(transcript, seconds))

    def _turns(
        self,
        speaker_model: spk.SpeakerModel,
        audio: Audio,
        counts: spk.SpeakerCounts,
        heard_speech: bool,
        progress: Progress,
    ) -> list[spk.Turn]:
        regions = speech_regions(audio, self.vad)
        if not regions and heard_speech:
            regions = [(0.0, len(audio) / SAMPLING_RATE)]  # the VAD missed what Whisper heard
        spans = spk.windows(regions, self.window_s, self.hop_s)
        progress(progress_event("diarizing", 0, 2, windows=len(spans)))
        embeddings = spk.embed(speaker_model, audio, spans)
        progress(progress_event("diarizing", 1, 2, windows=len(spans)))
        labels = spk.cluster(embeddings, counts, self.threshold)
        progress(progress_event("diarizing", 2, 2, windows=len(spans)))
        return spk.turns(spans, labels)

    async def health(self) -> bool:
        return await self.transcriber.health()

    async def unload(self) -> None:
        await self.transcriber.unload()
        await super().unload()


def _transcriber(
    kind: str, config: BackendConfig, context: EngineContext | None
) -> WhisperEngine[Any]:
    if kind == "faster-whisper":
        from gpubridge.engines.speech.faster_whisper_stt import FasterWhisperEngine

        return FasterWhisperEngine(config, context)
    if kind == "transformers-whisper":
        from gpubridge.engines.speech.transformers_whisper import TransformersWhisperEngine

        return TransformersWhisperEngine(config, context)
    raise ValueError(f"{config.name}: transcriber must be faster-whisper or transformers-whisper")


def create(config: BackendConfig, context: EngineContext) -> DiarizedWhisper:
    """The ``diarized-whisper`` backend type."""
    return DiarizedWhisper(config, context)
