"""Background removal, upscaling and face restoration behind POST /run, on tiny models loaded
from directories."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.media_server import MediaServer, png_bytes, serve_media
from tests.support.tiny_imaging import face_png

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
    tiny_birefnet_dir: Path,
    tiny_swin2sr_x2_dir: Path,
    tiny_swin2sr_x4_dir: Path,
    tiny_faces_dir: Path,
) -> AsyncIterator[Any]:
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

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as pair:
        yield pair


async def finished(client: Any, response: Any, timeout_s: float = 60) -> dict[str, Any]:
    """The job of a POST /run answer, once it has finished."""
    assert response.status_code in (200, 202), response.text
    job: dict[str, Any] = response.json()
    async with asyncio.timeout(timeout_s):
        while job["status"] not in ("completed", "failed", "cancelled"):
            await asyncio.sleep(0.05)
            job = (await client.get(f"/status/{job['job_id']}")).json()
    return job


async def downloaded(client: Any, file: dict[str, Any]) -> Image.Image:
    response = await client.get(f"/files/{file['file_id']}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(file["content_type"])
    return Image.open(io.BytesIO(response.content))


async def test_background_removal_returns_a_cut_out_and_its_mask(
    gateway: Any, media: MediaServer
) -> None:
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    url = media.add("product.png", png_bytes(40, 24), "image/png")
    body = {"service": "rembg-l4", "input": {"image_url": url, "return_mask": True}}
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)))
    assert job["status"] == "completed", job
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"]
    assert job["backend"] == "local-background-removal"
    cut_out = await downloaded(client, job["output"]["image"])
    assert (cut_out.mode, cut_out.size) == ("RGBA", (40, 24))
    mask = await downloaded(client, job["output"]["mask"])
    assert (mask.mode, mask.size) == ("L", (40, 24))


async def test_upscaling_enlarges_the_image_by_the_scale(gateway: Any, media: MediaServer) -> None:
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    url = media.add("small.png", png_bytes(20, 12), "image/png")
    body = {"service": "upscale-l4", "input": {"image_url": url, "scale": 2}}
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)))
    assert job["status"] == "completed", job
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"]
    assert job["output"]["image"]["width"] == 40
    image = await downloaded(client, job["output"]["image"])
    assert image.size == (40, 24)


async def test_face_restoration_restores_the_faces_it_finds(
    gateway: Any, media: MediaServer
) -> None:
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    url = media.add("portrait.png", face_png(), "image/png")
    body = {
        "service": "face-restore",
        "input": {"image_url": url, "upscale": 2, "fidelity": 0.7, "background_enhance": True},
    }
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)))
    assert job["status"] == "completed", job
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"]
    assert job["output"]["faces"] == 1
    image = await downloaded(client, job["output"]["image"])
    assert image.size == (192, 128)
