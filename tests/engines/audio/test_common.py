"""Helpers shared by the audio engines."""

from __future__ import annotations

import pytest

from gpubridge.engines.audio.common import output_format, split_sentences
from gpubridge.errors import InvalidInput


def test_split_sentences_keeps_short_text_whole() -> None:
    assert split_sentences("Hello there. How are you?", 100) == ["Hello there. How are you?"]


def test_split_sentences_cuts_at_sentence_ends_then_spaces() -> None:
    text = "One two three. Four five six! " + "word " * 30
    pieces = split_sentences(text, 40)
    assert pieces[0] == "One two three. Four five six!"
    assert all(0 < len(p) <= 40 for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_output_format_defaults_to_wav_and_rejects_others() -> None:
    assert output_format({}) == "wav"
    assert output_format({"format": "FLAC"}, ("wav", "flac")) == "flac"
    with pytest.raises(InvalidInput):
        output_format({"format": "opus"}, ("wav", "mp3"))


def test_split_sentences_cuts_after_cjk_punctuation_and_line_breaks() -> None:
    assert split_sentences("你好。世界！", 3) == ["你好。", "世界！"]  # noqa: RUF001
    assert split_sentences("Pi is 3.14 ok.\nNext line", 14) == ["Pi is 3.14 ok.", "Next line"]
