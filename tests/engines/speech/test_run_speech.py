"""Speech-to-text and diarized speech-to-text behind POST /run, on tiny models from directories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.engines.speech.conftest import two_voices_wav
from tests.engines.speech.test_diarization import SPEECH_WINDOWS
from tests.engines.speech.test_faster_whisper_stt import FAST
from tests.support.media_server import MediaServer, wav_bytes
from tests.support.service_runs import ServiceRuns, StartServices

pytestmark = [pytest.mark.slow]


@pytest.fixture
async def runs(
    services: StartServices,
    tiny_whisper_dir: Path,
    tiny_whisper_ct2_dir: Path,
    tiny_xvector_dir: Path,
) -> AsyncIterator[ServiceRuns]:
    fast = {**FAST, "no_speech_threshold": None}

    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        for key in ("whisper-l4", "whisperx"):
            for model in services[key]["models"]:
                model["source"] = str(tiny_whisper_dir)
                model.setdefault("options", {})["ctranslate2_source"] = str(tiny_whisper_ct2_dir)
                if key == "whisperx":
                    model["options"]["speaker_model"] = str(tiny_xvector_dir)
            for backend in services[key]["backends"]:
                backend["options"] = {**backend.get("options", {}), **fast}
        services["whisperx"]["backends"][0]["options"].update(SPEECH_WINDOWS)

    async with services(edit) as runs:
        yield runs


async def test_speech_to_text_runs_on_the_first_backend_and_bills_audio_seconds(
    runs: ServiceRuns, media: MediaServer
) -> None:
    url = media.add("hello.wav", wav_bytes(0.8), "audio/wav")
    job = await runs.run("whisper-l4", {"audio_url": url, "timestamps": "word"}, timeout_s=120)
    assert job["backend"] == "local-faster-whisper"
    output = job["output"]
    assert output["duration_seconds"] == pytest.approx(0.8)
    assert isinstance(output["language"], str)
    assert output["segments"] and all("words" in s for s in output["segments"])
    assert job["usage"]["audio_seconds"] == pytest.approx(0.8)
    runs.assert_charged(job)


async def test_diarized_speech_to_text_labels_speakers_asynchronously(
    runs: ServiceRuns, media: MediaServer
) -> None:
    url = media.add("two.wav", two_voices_wav(), "audio/wav")
    job = await runs.run("whisperx", {"audio_url": url, "num_speakers": 2}, timeout_s=120)
    output = job["output"]
    assert [s["id"] for s in output["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]
    assert all(s["speaker"] in ("SPEAKER_00", "SPEAKER_01") for s in output["segments"])
    assert job["usage"]["audio_seconds"] == pytest.approx(0.9)
    runs.assert_charged(job)
