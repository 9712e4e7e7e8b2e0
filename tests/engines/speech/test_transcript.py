"""The transcript shape shared by every Whisper runtime: options, tidying, output and usage."""

from __future__ import annotations

import pytest

from gpubridge.engines.speech.transcript import (
    Segment,
    TranscribeOptions,
    Transcript,
    Word,
    tidy,
    transcribe_options,
    transcript_output,
    transcript_usage,
)
from gpubridge.engines.speech.whisper_engine import temperature_schedule
from gpubridge.errors import InvalidInput


def sample() -> Transcript:
    return Transcript(
        language="en",
        duration_seconds=2.0,
        language_probability=0.91234,
        generated_tokens=7,
        segments=[
            Segment(
                0.5, 0.4, " Hello there.", [Word(0.5, 0.6, "Hello", 0.9), Word(0.2, 9.0, "there.")]
            ),
            Segment(0.3, 2.5, " Bye."),
        ],
    )


def test_options_default_and_reject_unknown_values() -> None:
    assert transcribe_options({}) == TranscribeOptions()
    assert transcribe_options({}, "word").words
    options = transcribe_options(
        {"language": "FR", "task": "translate", "prompt": "", "temperature": 0.5}
    )
    assert (options.language, options.task, options.prompt, options.temperature) == (
        "fr",
        "translate",
        None,
        0.5,
    )
    for bad in ({"task": "summarize"}, {"timestamps": "frame"}, {"temperature": 2}):
        with pytest.raises(InvalidInput):
            transcribe_options(bad)


def test_tidy_makes_times_non_decreasing_and_inside_the_audio() -> None:
    transcript = tidy(sample())
    first, second = transcript.segments
    assert (first.start, first.end) == (0.5, 0.5)
    assert [(w.start, w.end) for w in first.words or []] == [(0.5, 0.6), (0.6, 2.0)]
    assert (second.start, second.end) == (0.5, 2.0)


def test_output_has_one_shape_for_each_timestamps_level() -> None:
    transcript = tidy(sample())
    words = transcript_output(transcript, TranscribeOptions(timestamps="word"))
    assert words["text"] == "Hello there. Bye."
    assert words["language_probability"] == 0.9123
    assert words["segments"][0] == {
        "start": 0.5,
        "end": 0.5,
        "text": "Hello there.",
        "words": [
            {"start": 0.5, "end": 0.6, "word": "Hello", "probability": 0.9},
            {"start": 0.6, "end": 2.0, "word": "there."},
        ],
    }
    assert words["segments"][1]["words"] == []
    segments = transcript_output(transcript, TranscribeOptions())
    assert all("words" not in s for s in segments["segments"])
    assert transcript_output(transcript, TranscribeOptions(timestamps="none"))["segments"] == []


def test_usage_reports_the_audio_length_generated_tokens_and_compute_time() -> None:
    usage = transcript_usage(sample(), 0.25)
    assert (usage.audio_seconds, usage.completion_tokens, usage.compute_seconds) == (2.0, 7, 0.25)


def test_temperature_fallback_climbs_to_one_in_steps_of_a_fifth() -> None:
    assert temperature_schedule(0.0) == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert temperature_schedule(0.5) == (0.5, 0.7, 0.9)
    assert temperature_schedule(1.0) == (1.0,)
