"""The audio services behind POST /run, on tiny models from directories."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engines.audio.conftest import wav_info
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.media_server import MediaServer, serve_media, wav_bytes
from tests.support.tiny_bark import TINY_BARK_PRESET

pytestmark = [pytest.mark.slow]

CREDIT = 10_000_000


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the database layer is tested elsewhere on both databases."""
    return f"sqlite+aiosqlite:///{tmp_path / 'gpubridge.db'}"


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    with serve_media() as server:
        yield server


@pytest.fixture
async def gateway(
    database: object,
    database_url: str,
    tmp_path: Path,
    tiny_kokoro_dir: Path,
    tiny_bark_dir: Path,
    tiny_musicgen_dir: Path,
    tiny_clone_dirs: dict[str, Path],
) -> AsyncIterator[Any]:
    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        sources = {
            "tts-l4": tiny_kokoro_dir,
            "bark": tiny_bark_dir,
            "musicgen-l4": tiny_musicgen_dir,
            "voice-clone": tiny_clone_dirs["tts"],
        }
        for key, source in sources.items():
            for model in services[key]["models"]:
                model["source"] = str(source)
            for backend in services[key]["backends"]:
                backend["options"] = {**backend.get("options", {}), "device": "cpu"}
        for model in services["voice-clone"]["models"]:
            model["options"] = {
                "vocoder": str(tiny_clone_dirs["vocoder"]),
                "speaker_encoder": str(tiny_clone_dirs["speaker_encoder"]),
            }

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as pair:
        yield pair


async def finished(client: Any, response: Any, timeout_s: float = 180) -> dict[str, Any]:
    """The job of a POST /run answer, once it has finished."""
    assert response.status_code in (200, 202), response.text
    job: dict[str, Any] = response.json()
    async with asyncio.timeout(timeout_s):
        while job["status"] not in ("completed", "failed", "cancelled"):
            await asyncio.sleep(0.05)
            job = (await client.get(f"/status/{job['job_id']}")).json()
    return job


async def run_and_download(gateway: Any, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Run ``body`` for a funded account; the finished job and its downloaded audio file."""
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)))
    assert job["status"] == "completed", job
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"], job
    audio = job["output"]["audio"]
    response = await client.get(f"/files/{audio['file_id']}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(audio["content_type"])
    return job, response.content


async def test_text_to_speech_returns_a_downloadable_wav(gateway: Any) -> None:
    body = {"service": "tts-l4", "input": {"text": "Hello world.", "voice": "af_alloy"}}
    job, data = await run_and_download(gateway, body)
    assert wav_info(data)[1] == 24_000
    assert job["output"]["audio"]["sampling_rate"] == 24_000


async def test_bark_renders_a_preset_voice(gateway: Any) -> None:
    body = {
        "service": "bark",
        "input": {"text": "hello [laughter]", "voice": TINY_BARK_PRESET, "model": "bark-small"},
    }
    _, data = await run_and_download(gateway, body)
    assert wav_info(data)[1] == 24_000


async def test_music_lasts_the_requested_duration(gateway: Any) -> None:
    body = {"service": "musicgen-l4", "input": {"prompt": "lo-fi piano", "duration_seconds": 1}}
    job, data = await run_and_download(gateway, body)
    assert wav_info(data)[2] == pytest.approx(1.0, abs=0.05)
    assert job["output"]["audio"]["duration_seconds"] == pytest.approx(1.0, abs=0.05)


async def test_voice_clone_reads_text_in_the_reference_voice(
    gateway: Any, media: MediaServer
) -> None:
    url = media.add("voice.wav", wav_bytes(1.0), "audio/wav")
    body = {"service": "voice-clone", "input": {"audio_url": url, "text": "Hello there."}}
    _, data = await run_and_download(gateway, body)
    assert wav_info(data)[1] == 16_000
