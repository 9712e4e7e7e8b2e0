"""Stickers and product ads behind POST /run, on a tiny SDXL and a tiny segmentation network."""

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
from tests.support.tiny_diffusion import build_tiny_sdxl
from tests.support.tiny_imaging import build_tiny_segmenter

pytestmark = pytest.mark.slow

CREDIT = 10_000_000


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    with serve_media() as server:
        yield server


@pytest.fixture(scope="module")
def composed_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        "sdxl": build_tiny_sdxl(tmp_path_factory.mktemp("run-sdxl")),
        "inpaint": build_tiny_sdxl(tmp_path_factory.mktemp("run-sdxl-inpaint"), inpaint=True),
        "segmenter": build_tiny_segmenter(tmp_path_factory.mktemp("run-birefnet")),
    }


@pytest.fixture
async def gateway(
    database: object, database_url: str, tmp_path: Path, composed_models: dict[str, Path]
) -> AsyncIterator[Any]:
    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        for service, pipeline in (("sticker", "sdxl"), ("ad-inpaint", "inpaint")):
            for model in services[service]["models"]:
                model["source"] = str(composed_models[pipeline])
                options = model.setdefault("options", {})
                for key in ("base_model", "lora_file", "scheduler"):
                    options.pop(key, None)
                options["background_removal"] = str(composed_models["segmenter"])
            for backend in services[service]["backends"]:
                backend.setdefault("options", {})["device"] = "cpu"

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as pair:
        yield pair


async def finished(client: Any, response: Any, timeout_s: float = 120) -> dict[str, Any]:
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
    return Image.open(io.BytesIO(response.content))


async def test_a_sticker_job_returns_a_transparent_png(gateway: Any, media: MediaServer) -> None:
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    url = media.add("fox.png", png_bytes(32, 32), "image/png")
    body = {
        "service": "sticker",
        "input": {"image_url": url, "prompt": "a fox", "num_inference_steps": 2, "seed": 1},
    }
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)))
    assert job["status"] == "completed", job
    assert job["backend"] == "local-sticker"
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"]
    sticker = await downloaded(client, job["output"]["images"][0])
    assert (sticker.mode, sticker.size) == ("RGBA", (32, 32))


async def test_an_ad_job_paints_a_scene_of_the_asked_size(gateway: Any, media: MediaServer) -> None:
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    url = media.add("bottle.png", png_bytes(32, 32), "image/png")
    body = {
        "service": "ad-inpaint",
        "input": {
            "image_url": url,
            "prompt": "on a marble counter",
            "width": 256,
            "height": 256,
            "product_scale": 0.5,
            "num_inference_steps": 1,
            "seed": 2,
        },
    }
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)))
    assert job["status"] == "completed", job.get("error")
    assert job["backend"] == "local-ad-inpaint"
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"]
    ad = await downloaded(client, job["output"]["images"][0])
    assert ad.size == (256, 256)
