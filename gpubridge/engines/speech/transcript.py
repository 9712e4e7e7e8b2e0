"""What every Whisper runtime returns, in one shape: the job's options, the transcript with its
segments and words, and the output dict and usage built from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gpubridge.engines.base import Usage
from gpubridge.errors import InvalidInput

Timestamps = Literal["none", "segment", "word"]
Task = Literal["transcribe", "translate"]


@dataclass(frozen=True)
class TranscribeOptions:
    """A transcription job's options (already checked against the service's schema)."""

    language: str | None = None
    task: Task = "transcribe"
    timestamps: Timestamps = "segment"
    prompt: str | None = None
    temperature: float = 0.0

    @property
    def words(self) -> bool:
        return self.timestamps == "word"


def transcribe_options(
    data: dict[str, Any], default_timestamps: Timestamps = "segment"
) -> TranscribeOptions:
    """The options of a job's input; ``InvalidInput`` for values no runtime understands."""
    task = data.get("task", "transcribe")
    timestamps = data.get("timestamps", default_timestamps)
    if task not in ("transcribe", "translate"):
        raise InvalidInput("task must be transcribe or translate")
    if timestamps not in ("none", "segment", "word"):
        raise InvalidInput("timestamps must be none, segment or word")
    temperature = float(data.get("temperature", 0.0))
    if not 0.0 <= temperature <= 1.0:
        raise InvalidInput("temperature must be between 0 and 1")
    language = data.get("language") or None
    prompt = data.get("prompt") or None
    return TranscribeOptions(
        language=str(language).lower() if language else None,
        task=task,
        timestamps=timestamps,
        prompt=str(prompt) if prompt else None,
        temperature=temperature,
    )


@dataclass
class Word:
    start: float
    end: float
    word: str
    probability: float | None = None
    speaker: str | None = None


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] | None = None
    speaker: str | None = None


@dataclass
class Transcript:
    """A runtime's result: ``generated_tokens`` counts the tokens the decoder produced."""

    language: str
    duration_seconds: float
    segments: list[Segment] = field(default_factory=list)
    language_probability: float | None = None
    generated_tokens: int = 0
    text: str | None = None

    @property
    def full_text(self) -> str:
        if self.text is not None:
            return self.text.strip()
        return "".join(s.text for s in self.segments).strip()


def tidy(transcript: Transcript) -> Transcript:
    """Clamp times into [0, duration] and make them non-decreasing (segments, and the words
    of each), as random or hallucinating decoders may not."""
    limit = transcript.duration_seconds
    floor = 0.0
    for segment in transcript.segments:
        segment.start = _clamp(max(segment.start, floor), limit)
        segment.end = _clamp(max(segment.end, segment.start), limit)
        floor = segment.end
        word_floor = segment.start
        for word in segment.words or []:
            word.start = _clamp(max(word.start, word_floor), limit)
            word.end = _clamp(max(word.end, word.start), limit)
            word_floor = word.end
    return transcript


def _clamp(value: float, limit: float) -> float:
    return round(min(max(float(value), 0.0), limit), 3)


def transcript_output(transcript: Transcript, options: TranscribeOptions) -> dict[str, Any]:
    """The job's output: text, language, duration and (unless timestamps is none) segments,
    with words when word timestamps were asked for."""
    output: dict[str, Any] = {
        "text": transcript.full_text,
        "language": transcript.language,
        "duration_seconds": round(transcript.duration_seconds, 3),
        "segments": [],
    }
    if transcript.language_probability is not None:
        output["language_probability"] = round(transcript.language_probability, 4)
    if options.timestamps == "none":
        return output
    for segment in transcript.segments:
        item: dict[str, Any] = {
            "start": segment.start,
            "end": segment.end,
            "text": segment.text.strip(),
        }
        if segment.speaker is not None:
            item["speaker"] = segment.speaker
        if options.words:
            item["words"] = [_word(w) for w in segment.words or []]
        output["segments"].append(item)
    return output


def _word(word: Word) -> dict[str, Any]:
    item: dict[str, Any] = {"start": word.start, "end": word.end, "word": word.word}
    if word.probability is not None:
        item["probability"] = round(word.probability, 4)
    if word.speaker is not None:
        item["speaker"] = word.speaker
    return item


def transcript_usage(transcript: Transcript, compute_seconds: float) -> Usage:
    """Usage billed per audio second (``audio_seconds`` is the input's length)."""
    return Usage(
        completion_tokens=transcript.generated_tokens,
        audio_seconds=round(transcript.duration_seconds, 3),
        compute_seconds=compute_seconds,
    )
