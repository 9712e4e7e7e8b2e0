"""Speech-to-text and diarized speech-to-text behind POST /run, on tiny models from directories."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engines.speech.conftest import two_voices_wav
from tests.engines.speech.test_diarization import SPEECH_WINDOWS
from tests.engines.speech.test_faster_whisper_stt import FAST
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.media_server import MediaServer, serve_media, wav_bytes

pytestmark = [pytest.mark.slow]

CREDIT = 10_000_000


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    with serve_media() as server:
        yield server


@pytest.fixture
async def gateway(
    database: object,
    database_url: str,
    tmp_path: Path,
    tiny_whisper_dir: Path,
    tiny_whisper_ct2_dir: Path,
    tiny_xvector_dir: Path,
) -> AsyncIterator[Any]:
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

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as pair:
        yield pair


async def finished(client: Any, response: Any, timeout_s: float = 120) -> dict[str, Any]:
    """The job of a POST /run answer, once it has finished."""
    assert response.status_code in (200, 202), response.text
    job: dict[str, Any] = response.json()
    async with asyncio.timeout(timeout_s):
        while job["status"] not in ("completed", "failed", "cancelled"):
            await asyncio.sleep(0.05)
            job = (await client.get(f"/status/{job['job_id']}")).json()
    return job


def assert_charged(job: dict[str, Any]) -> None:
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"], job


async def test_speech_to_text_runs_on_the_first_backend_and_bills_audio_seconds(
    gateway: Any, media: MediaServer
) -> None:
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    url = media.add("hello.wav", wav_bytes(0.8), "audio/wav")
    body = {"service": "whisper-l4", "input": {"audio_url": url, "timestamps": "word"}}
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)))
    assert job["status"] == "completed", job
    assert job["backend"] == "local-faster-whisper"
    output = job["output"]
    assert output["duration_seconds"] == pytest.approx(0.8)
    assert isinstance(output["language"], str)
    assert output["segments"] and all("words" in s for s in output["segments"])
    assert job["usage"]["audio_seconds"] == pytest.approx(0.8)
    assert_charged(job)


async def test_diarized_speech_to_text_labels_speakers_asynchronously(
    gateway: Any, media: MediaServer
) -> None:
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    url = media.add("two.wav", two_voices_wav(), "audio/wav")
    body = {"service": "whisperx", "input": {"audio_url": url, "num_speakers": 2}}
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)))
    assert job["status"] == "completed", job
    output = job["output"]
    assert [s["id"] for s in output["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]
    assert all(s["speaker"] in ("SPEAKER_00", "SPEAKER_01") for s in output["segments"])
    assert job["usage"]["audio_seconds"] == pytest.approx(0.9)
    assert_charged(job)
