"""Stickers and product ads behind POST /run, on a tiny SDXL and a tiny segmentation network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.media_server import MediaServer, png_bytes
from tests.support.service_runs import ServiceRuns, StartServices

pytestmark = pytest.mark.slow


@pytest.fixture
async def runs(
    services: StartServices,
    tiny_sdxl_dir: Path,
    tiny_sdxl_inpaint_dir: Path,
    tiny_segmenter_dir: Path,
) -> AsyncIterator[ServiceRuns]:
    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        sources = {"sticker": tiny_sdxl_dir, "ad-inpaint": tiny_sdxl_inpaint_dir}
        for service, source in sources.items():
            for model in services[service]["models"]:
                model["source"] = str(source)
                options = model.setdefault("options", {})
                for key in ("base_model", "lora_file", "scheduler"):
                    options.pop(key, None)
                options["background_removal"] = str(tiny_segmenter_dir)
            for backend in services[service]["backends"]:
                backend.setdefault("options", {})["device"] = "cpu"

    async with services(edit) as runs:
        yield runs


async def test_a_sticker_job_returns_a_transparent_png(
    runs: ServiceRuns, media: MediaServer
) -> None:
    url = media.add("fox.png", png_bytes(32, 32), "image/png")
    data = {"image_url": url, "prompt": "a fox", "num_inference_steps": 2, "seed": 1}
    job = await runs.run("sticker", data, timeout_s=120)
    assert job["backend"] == "local-sticker"
    runs.assert_charged(job)
    sticker = await runs.image(job["output"]["images"][0])
    assert (sticker.mode, sticker.size) == ("RGBA", (32, 32))


async def test_an_ad_job_paints_a_scene_of_the_asked_size(
    runs: ServiceRuns, media: MediaServer
) -> None:
    url = media.add("bottle.png", png_bytes(32, 32), "image/png")
    data = {
        "image_url": url,
        "prompt": "on a marble counter",
        "width": 256,
        "height": 256,
        "product_scale": 0.5,
        "num_inference_steps": 1,
        "seed": 2,
    }
    job = await runs.run("ad-inpaint", data, timeout_s=120)
    assert job["backend"] == "local-ad-inpaint"
    runs.assert_charged(job)
    ad = await runs.image(job["output"]["images"][0])
    assert ad.size == (256, 256)
