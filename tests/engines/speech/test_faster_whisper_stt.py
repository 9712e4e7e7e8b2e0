"""faster-whisper on a tiny random Whisper converted by CTranslate2's own converter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.base import EngineRequest, EngineResult, ModelRef
from gpubridge.engines.speech.faster_whisper_stt import FasterWhisperEngine, create
from gpubridge.errors import InvalidInput
from tests.support.engine_calls import Events, engine, media_input
from tests.support.engine_calls import request as engine_request
from tests.support.media_server import wav_bytes

pytestmark = pytest.mark.slow

FAST = {"max_new_tokens": 6, "beam_size": 1, "temperature_fallback": False}


def engine_for(**options: Any) -> FasterWhisperEngine:
    return engine(create, "faster-whisper", name="fw", **{**FAST, **options})


@pytest.fixture(scope="module")
def whisper() -> FasterWhisperEngine:
    return engine_for(no_speech_threshold=None)


def request(model_dir: Path, seconds: float = 0.8, **data: Any) -> EngineRequest:
    audio = media_input("audio_url", wav_bytes(seconds), "audio/wav")
    return engine_request("whisper-l4", data, media=audio, model=model_dir, job_id="job")


def assert_monotone(output: dict[str, Any]) -> None:
    previous = 0.0
    for segment in output["segments"]:
        assert previous <= segment["start"] <= segment["end"] <= output["duration_seconds"]
        previous = segment["end"]
        for word in segment.get("words", []):
            assert segment["start"] <= word["start"] <= word["end"] <= output["duration_seconds"]


async def test_transcribes_with_word_timestamps_a_detected_language_and_usage(
    whisper: FasterWhisperEngine, tiny_whisper_ct2_dir: Path
) -> None:
    events = Events()
    result = await whisper.run(request(tiny_whisper_ct2_dir, timestamps="word"), events)
    output = result.output
    assert isinstance(output["text"], str)
    assert output["duration_seconds"] == pytest.approx(0.8)
    assert len(output["language"]) in (2, 3)
    assert 0 < output["language_probability"] <= 1
    assert output["segments"], output
    assert all(isinstance(w["word"], str) for s in output["segments"] for w in s["words"])
    assert_monotone(output)
    assert result.usage.audio_seconds == pytest.approx(0.8)
    assert result.usage.completion_tokens > 0
    assert result.usage.compute_seconds > 0
    assert events.stages()[:2] == ["loading_model", "model_loaded"]
    assert events.stages()[-1] == "transcribing"


async def test_a_given_language_task_and_prompt_are_used_and_segments_carry_no_words(
    whisper: FasterWhisperEngine, tiny_whisper_ct2_dir: Path
) -> None:
    data = {
        "language": "fr",
        "task": "translate",
        "prompt": "Dogs and cats.",
        "timestamps": "segment",
    }
    result = await whisper.run(request(tiny_whisper_ct2_dir, **data), Events())
    assert result.output["language"] == "fr"
    assert "language_probability" not in result.output
    assert all("words" not in s for s in result.output["segments"])
    assert_monotone(result.output)


async def test_without_timestamps_only_text_comes_back(
    whisper: FasterWhisperEngine, tiny_whisper_ct2_dir: Path
) -> None:
    result: EngineResult = await whisper.run(
        request(tiny_whisper_ct2_dir, timestamps="none", temperature=0.4), Events()
    )
    assert result.output["segments"] == []
    assert isinstance(result.output["text"], str)


async def test_an_unknown_language_or_a_missing_audio_is_invalid_input(
    whisper: FasterWhisperEngine, tiny_whisper_ct2_dir: Path
) -> None:
    with pytest.raises(InvalidInput):
        await whisper.run(request(tiny_whisper_ct2_dir, language="zz"), Events())
    bare = engine_request("whisper-l4", model=tiny_whisper_ct2_dir, job_id="job")
    with pytest.raises(InvalidInput):
        await whisper.run(bare, Events())


async def test_a_models_ctranslate2_source_is_what_loads(
    whisper: FasterWhisperEngine, tiny_whisper_dir: Path, tiny_whisper_ct2_dir: Path
) -> None:
    model = ModelRef(
        "tiny", str(tiny_whisper_dir), {"ctranslate2_source": str(tiny_whisper_ct2_dir)}
    )
    assert whisper.source_of(model) == str(tiny_whisper_ct2_dir)


@pytest.mark.gpu
async def test_transcribes_on_cuda(tiny_whisper_ct2_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cuda = engine_for(device="cuda", compute_type="float16", no_speech_threshold=None)
    result = await cuda.run(request(tiny_whisper_ct2_dir, timestamps="word"), Events())
    assert result.output["segments"]
    assert_monotone(result.output)
    await cuda.unload()
