"""The closest known name to a mistyped one."""

from __future__ import annotations

from gpubridge.suggest import closest, did_you_mean

SERVICES = ["llm-4090", "embedding-l4", "whisper-l4", "whisperx", "tts-l4"]


def test_a_typo_finds_the_name_that_was_meant() -> None:
    assert closest("llm-409", SERVICES) == "llm-4090"
    assert closest("promt", ["prompt", "messages", "system"]) == "prompt"
    assert closest("embeding-l4", SERVICES) == "embedding-l4"


def test_case_does_not_hide_the_name_that_was_meant() -> None:
    assert closest("LLM-4090", SERVICES) == "llm-4090"


def test_a_name_like_none_of_the_known_ones_finds_nothing() -> None:
    assert closest("colour", ["prompt", "messages", "system"]) is None
    assert closest("anything", []) is None


def test_did_you_mean_words_the_hint_or_says_nothing() -> None:
    assert did_you_mean("txt", ["text", "model"]) == (" (did you mean `text`?)", "text")
    assert did_you_mean("zzz", ["text", "model"]) == ("", None)
