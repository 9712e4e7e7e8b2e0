"""Video generation and image animation behind POST /run, on tiny pipelines loaded from
directories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.engines.video.video_files import decoded
from tests.support.media_server import MediaServer, png_bytes
from tests.support.service_runs import ServiceRuns, StartServices

pytestmark = [pytest.mark.slow]

TINY = {"width": 32, "height": 32, "fps": 8, "num_inference_steps": 2}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the database layer is tested elsewhere on both databases."""
    return f"sqlite+aiosqlite:///{tmp_path / 'gpubridge.db'}"


@pytest.fixture
async def runs(
    services: StartServices,
    tiny_ltx_dir: Path,
    tiny_wan_dir: Path,
    tiny_svd_dir: Path,
) -> AsyncIterator[ServiceRuns]:
    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        for model in services["video"]["models"]:
            tiny = tiny_ltx_dir if model["id"] == "ltx-video" else tiny_wan_dir
            model["source"] = str(tiny)
            model["options"] = {**TINY, "max_sequence_length": 16}
        for model in services["animate"]["models"]:
            model["source"] = str(tiny_svd_dir)
            model["options"] = {**TINY, "decode_chunk_size": 8}

    async with services(edit) as runs:
        yield runs


async def test_a_first_frame_and_a_prompt_become_an_mp4(
    runs: ServiceRuns, media: MediaServer
) -> None:
    url = media.add("first.png", png_bytes(48, 32), "image/png")
    data = {"prompt": "a fox runs", "image_url": url, "num_frames": 9, "seed": 4}
    job = await runs.run("video", data, timeout_s=180)
    assert job["backend"] == "local-diffusers-video"
    output = job["output"]
    assert (output["frames"], output["fps"], output["seed"], output["format"]) == (9, 8, 4, "mp4")
    video = output["video"]
    assert (video["content_type"], video["frames"], video["width"]) == ("video/mp4", 9, 32)
    assert decoded(await runs.download(video)) == ("h264", 9, 32, 32)
    assert job["usage"]["outputs"] == 1
    runs.assert_charged(job)


async def test_a_still_image_is_animated(runs: ServiceRuns, media: MediaServer) -> None:
    url = media.add("still.png", png_bytes(32, 32), "image/png")
    job = await runs.run("animate", {"image_url": url, "num_frames": 14, "seed": 2}, timeout_s=180)
    assert job["backend"] == "local-diffusers-animate"
    assert (job["output"]["frames"], job["output"]["fps"]) == (14, 8)
    video = job["output"]["video"]
    assert video["content_type"] == "video/mp4"
    assert decoded(await runs.download(video)) == ("h264", 14, 32, 32)
    runs.assert_charged(job)
