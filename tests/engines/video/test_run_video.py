"""Video generation and image animation behind POST /run, on tiny pipelines loaded from
directories."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engines.video.video_files import decoded
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.media_server import MediaServer, png_bytes, serve_media

pytestmark = [pytest.mark.slow]

CREDIT = 10_000_000
TINY = {"width": 32, "height": 32, "fps": 8, "num_inference_steps": 2}


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
    tiny_ltx_dir: Path,
    tiny_wan_dir: Path,
    tiny_svd_dir: Path,
) -> AsyncIterator[Any]:
    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        for model in services["video"]["models"]:
            tiny = tiny_ltx_dir if model["id"] == "ltx-video" else tiny_wan_dir
            model["source"] = str(tiny)
            model["options"] = {**TINY, "max_sequence_length": 16}
        for model in services["animate"]["models"]:
            model["source"] = str(tiny_svd_dir)
            model["options"] = {**TINY, "decode_chunk_size": 8}

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as pair:
        yield pair


async def finished(client: Any, response: Any, key: str, timeout_s: float = 180) -> dict[str, Any]:
    """The job of a POST /run answer, once it has finished."""
    assert response.status_code in (200, 202), response.text
    job: dict[str, Any] = response.json()
    async with asyncio.timeout(timeout_s):
        while job["status"] not in ("completed", "failed", "cancelled"):
            await asyncio.sleep(0.1)
            job = (await client.get(f"/status/{job['job_id']}", headers=auth(key))).json()
    return job


async def downloaded(client: Any, file: dict[str, Any]) -> bytes:
    response = await client.get(f"/files/{file['file_id']}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("video/mp4")
    assert len(response.content) == file["size_bytes"]
    return bytes(response.content)


async def test_a_first_frame_and_a_prompt_become_an_mp4(gateway: Any, media: MediaServer) -> None:
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    url = media.add("first.png", png_bytes(48, 32), "image/png")
    body = {
        "service": "video",
        "input": {"prompt": "a fox runs", "image_url": url, "num_frames": 9, "seed": 4},
    }
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)), key)
    assert job["status"] == "completed", job
    assert job["backend"] == "local-diffusers-video"
    output = job["output"]
    assert (output["frames"], output["fps"], output["seed"], output["format"]) == (9, 8, 4, "mp4")
    video = output["video"]
    assert (video["content_type"], video["frames"], video["width"]) == ("video/mp4", 9, 32)
    assert decoded(await downloaded(client, video)) == ("h264", 9, 32, 32)
    assert job["usage"]["outputs"] == 1
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"]


async def test_a_still_image_is_animated(gateway: Any, media: MediaServer) -> None:
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    url = media.add("still.png", png_bytes(32, 32), "image/png")
    body = {"service": "animate", "input": {"image_url": url, "num_frames": 14, "seed": 2}}
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)), key)
    assert job["status"] == "completed", job
    assert job["backend"] == "local-diffusers-animate"
    assert (job["output"]["frames"], job["output"]["fps"]) == (14, 8)
    assert decoded(await downloaded(client, job["output"]["video"])) == ("h264", 14, 32, 32)
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"]
