"""The vision services behind POST /run: tiny random BLIP, CLIP and LLaVA models loaded from
directories through the code that loads real weights, with images fetched from loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.media_server import MediaServer, png_bytes
from tests.support.service_runs import Job, ServiceRuns, StartServices

pytestmark = [pytest.mark.slow]


@pytest.fixture
async def runs(
    services: StartServices,
    tiny_blip_dir: Path,
    tiny_clip_dir: Path,
    tiny_llava_dir: Path,
) -> AsyncIterator[ServiceRuns]:
    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        for model in services["llava-4090"]["models"]:
            model["source"], model["options"] = str(tiny_llava_dir), {}
        for model in services["caption"]["models"]:
            model["source"] = str(tiny_blip_dir)
        for model in services["clip"]["models"]:
            model["source"] = str(tiny_clip_dir)
            model["options"] = {"caption_model": str(tiny_blip_dir)}

    async with services(edit) as runs:
        yield runs


async def run(runs: ServiceRuns, service: str, **data: Any) -> Job:
    """A job answered synchronously, completed and charged."""
    job = await runs.run(service, data, http_status=200)
    runs.assert_charged(job)
    return job


async def test_visual_questions_are_answered_and_charged(
    runs: ServiceRuns, media: MediaServer
) -> None:
    image = media.add("vqa.png", png_bytes(), "image/png")
    job = await run(runs, "llava-4090", image_url=image, prompt="What?", max_tokens=4)
    assert job["backend"] == "local-transformers-vlm"
    assert isinstance(job["output"]["text"], str)
    assert job["output"]["model"] == "moondream2"
    assert 0 < job["usage"]["completion_tokens"] <= 4


async def test_images_are_captioned_and_charged(runs: ServiceRuns, media: MediaServer) -> None:
    image = media.add("caption.png", png_bytes(seed=5), "image/png")
    job = await run(runs, "caption", image_url=image, prompt="a picture of", max_tokens=4)
    assert job["backend"] == "local-blip"
    assert job["output"]["caption"].startswith("a picture of")


async def test_images_are_interrogated_into_prompts_and_charged(
    runs: ServiceRuns, media: MediaServer
) -> None:
    image = media.add("clip.png", png_bytes(seed=9), "image/png")
    job = await run(runs, "clip", image_url=image, mode="classic")
    assert job["backend"] == "local-clip-interrogator"
    output = job["output"]
    assert output["prompt"].startswith(output["caption"])
    assert {"text", "score"} <= set(output["artist"])
    assert len(output["flavors"]) == 3
