"""transformers' Whisper generation on a tiny random checkpoint loaded from its directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.speech.transformers_whisper import TransformersWhisperEngine, create
from gpubridge.errors import InvalidInput
from tests.engines.speech.test_faster_whisper_stt import FAST, assert_monotone, request
from tests.engines.speech.test_faster_whisper_stt import engine_for as faster_whisper
from tests.support.engine_calls import Events, engine

pytestmark = pytest.mark.slow


def engine_for(**options: Any) -> TransformersWhisperEngine:
    return engine(create, "transformers-whisper", name="tw", **{**FAST, **options})


@pytest.fixture(scope="module")
def whisper() -> TransformersWhisperEngine:
    return engine_for()


async def test_transcribes_with_word_timestamps_a_detected_language_and_usage(
    whisper: TransformersWhisperEngine, tiny_whisper_dir: Path
) -> None:
    events = Events()
    result = await whisper.run(request(tiny_whisper_dir, timestamps="word"), events)
    output = result.output
    assert output["duration_seconds"] == pytest.approx(0.8)
    assert 0 < output["language_probability"] <= 1
    assert output["segments"], output
    assert all(set(w) == {"start", "end", "word"} for s in output["segments"] for w in s["words"])
    assert_monotone(output)
    assert result.usage.audio_seconds == pytest.approx(0.8)
    assert result.usage.completion_tokens > 0
    assert result.usage.compute_seconds > 0
    assert events.stages() == ["loading_model", "model_loaded", "transcribing", "transcribing"]


async def test_both_runtimes_detect_the_same_language_and_answer_in_one_shape(
    whisper: TransformersWhisperEngine, tiny_whisper_dir: Path, tiny_whisper_ct2_dir: Path
) -> None:
    fast = faster_whisper(no_speech_threshold=None)
    ours = (await whisper.run(request(tiny_whisper_dir, timestamps="segment"), Events())).output
    theirs = (await fast.run(request(tiny_whisper_ct2_dir, timestamps="segment"), Events())).output
    assert ours["language"] == theirs["language"]
    assert ours["language_probability"] == pytest.approx(theirs["language_probability"], abs=0.01)
    assert set(ours) == set(theirs)
    assert {k for s in ours["segments"] for k in s} == {k for s in theirs["segments"] for k in s}


async def test_a_given_language_translate_prompt_and_sampling_are_accepted(
    whisper: TransformersWhisperEngine, tiny_whisper_dir: Path
) -> None:
    data = {"language": "de", "task": "translate", "prompt": "Hello world", "temperature": 0.6}
    result = await whisper.run(request(tiny_whisper_dir, **data), Events())
    assert result.output["language"] == "de"
    assert "language_probability" not in result.output
    assert_monotone(result.output)


async def test_without_timestamps_only_text_comes_back(
    whisper: TransformersWhisperEngine, tiny_whisper_dir: Path
) -> None:
    result = await whisper.run(request(tiny_whisper_dir, timestamps="none"), Events())
    assert result.output["segments"] == []
    assert isinstance(result.output["text"], str)
    assert result.usage.completion_tokens > 0


async def test_audio_longer_than_one_window_is_transcribed_long_form(
    whisper: TransformersWhisperEngine, tiny_whisper_dir: Path
) -> None:
    result = await whisper.run(request(tiny_whisper_dir, seconds=31.0), Events())
    assert result.output["duration_seconds"] == pytest.approx(31.0)
    assert result.usage.audio_seconds == pytest.approx(31.0)
    assert_monotone(result.output)


async def test_an_unknown_language_is_invalid_input(
    whisper: TransformersWhisperEngine, tiny_whisper_dir: Path
) -> None:
    with pytest.raises(InvalidInput):
        await whisper.run(request(tiny_whisper_dir, language="zz"), Events())


@pytest.mark.gpu
async def test_transcribes_on_cuda(tiny_whisper_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cuda = engine_for(device="cuda")
    result = await cuda.run(request(tiny_whisper_dir, timestamps="word"), Events())
    assert result.output["segments"]
    assert_monotone(result.output)
    await cuda.unload()
