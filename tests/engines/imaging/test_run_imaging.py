"""Background removal, upscaling and face restoration behind POST /run, on tiny models loaded
from directories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.media_server import MediaServer, png_bytes
from tests.support.service_runs import ServiceRuns, StartServices
from tests.support.tiny_imaging import face_png

pytestmark = [pytest.mark.slow]


@pytest.fixture
async def runs(
    services: StartServices,
    tiny_birefnet_dir: Path,
    tiny_swin2sr_x2_dir: Path,
    tiny_swin2sr_x4_dir: Path,
    tiny_faces_dir: Path,
) -> AsyncIterator[ServiceRuns]:
    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        for model in services["rembg-l4"]["models"]:
            model["source"] = str(tiny_birefnet_dir)
        for model in services["upscale-l4"]["models"]:
            model["source"] = str(tiny_swin2sr_x4_dir)
            if "checkpoints" in model.get("options", {}):
                model["options"]["checkpoints"] = {
                    "2": str(tiny_swin2sr_x2_dir),
                    "4": str(tiny_swin2sr_x4_dir),
                }
        for model in services["face-restore"]["models"]:
            model["source"] = str(tiny_faces_dir)
            model["options"]["background_upscaler"] = str(tiny_swin2sr_x2_dir)

    async with services(edit) as runs:
        yield runs


async def test_background_removal_returns_a_cut_out_and_its_mask(
    runs: ServiceRuns, media: MediaServer
) -> None:
    url = media.add("product.png", png_bytes(40, 24), "image/png")
    job = await runs.run("rembg-l4", {"image_url": url, "return_mask": True})
    runs.assert_charged(job)
    assert job["backend"] == "local-background-removal"
    cut_out = await runs.image(job["output"]["image"])
    assert (cut_out.mode, cut_out.size) == ("RGBA", (40, 24))
    mask = await runs.image(job["output"]["mask"])
    assert (mask.mode, mask.size) == ("L", (40, 24))


async def test_upscaling_enlarges_the_image_by_the_scale(
    runs: ServiceRuns, media: MediaServer
) -> None:
    url = media.add("small.png", png_bytes(20, 12), "image/png")
    job = await runs.run("upscale-l4", {"image_url": url, "scale": 2})
    runs.assert_charged(job)
    assert job["output"]["image"]["width"] == 40
    image = await runs.image(job["output"]["image"])
    assert image.size == (40, 24)


async def test_face_restoration_restores_the_faces_it_finds(
    runs: ServiceRuns, media: MediaServer
) -> None:
    url = media.add("portrait.png", face_png(), "image/png")
    data = {"image_url": url, "upscale": 2, "fidelity": 0.7, "background_enhance": True}
    job = await runs.run("face-restore", data)
    runs.assert_charged(job)
    assert job["output"]["faces"] == 1
    image = await runs.image(job["output"]["image"])
    assert image.size == (192, 128)
