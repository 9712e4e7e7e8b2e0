"""The six image-generation services behind POST /run, on tiny pipelines loaded from directories."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.engines.diffusion.conftest import IP_ADAPTER_OPTIONS, picture
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.media_server import MediaServer, png_bytes, serve_media

pytestmark = [pytest.mark.slow]

CREDIT = 10_000_000
STEPS = {"num_inference_steps": 2}


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    with serve_media() as server:
        yield server


def _point(service: dict[str, Any], model_id: str, source: Path, **options: Any) -> None:
    """Serve ``model_id`` of ``service`` from ``source`` with ``options`` (hub-only settings
    such as fp16 weight variants dropped)."""
    for model in service["models"]:
        if model["id"] == model_id:
            model["source"] = str(source)
            model["options"] = {**STEPS, **options}
            return
    raise AssertionError(f"no model {model_id}")


@pytest.fixture
async def gateway(
    database: object,
    database_url: str,
    tmp_path: Path,
    tiny_sdxl_dir: Path,
    tiny_flux_fill_dir: Path,
    tiny_controlnet_dir: Path,
    tiny_depth_controlnet_dir: Path,
    tiny_depth_estimator_dir: Path,
    tiny_variation_dir: Path,
    tiny_ip_adapter_dir: Path,
) -> AsyncIterator[Any]:
    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        base = str(tiny_sdxl_dir)
        _point(
            services["image-4090"],
            "playground-v2.5",
            tiny_sdxl_dir,
            pipeline="StableDiffusionXLPipeline",
        )
        _point(
            services["img2img"],
            "sdxl-refiner",
            tiny_sdxl_dir,
            pipeline="StableDiffusionXLImg2ImgPipeline",
        )
        _point(
            services["inpaint"], "flux-fill-dev", tiny_flux_fill_dir, pipeline="FluxFillPipeline"
        )
        _point(
            services["controlnet"],
            "controlnet-sdxl",
            tiny_controlnet_dir,
            base_model=base,
            controlnets={"depth": str(tiny_depth_controlnet_dir)},
            annotators={"depth": str(tiny_depth_estimator_dir)},
        )
        _point(services["image-variation"], "sd-image-variations", tiny_variation_dir)
        _point(
            services["photomaker"],
            "ip-adapter-plus-face",
            tiny_ip_adapter_dir,
            base_model=base,
            **IP_ADAPTER_OPTIONS,
        )

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as pair:
        app, client = pair
        key = await register(client)
        await app.state.gateway.grant("you@example.com", CREDIT)
        yield client, key


async def run_job(client: Any, key: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST /run, then poll until the job has finished."""
    response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code in (200, 202), response.text
    job: dict[str, Any] = response.json()
    async with asyncio.timeout(120):
        while job["status"] not in ("completed", "failed", "cancelled"):
            await asyncio.sleep(0.05)
            job = (await client.get(f"/status/{job['job_id']}")).json()
    assert job["status"] == "completed", job
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"]
    return job


async def downloaded_sizes(client: Any, job: dict[str, Any]) -> list[tuple[int, int]]:
    sizes = []
    for file in job["output"]["images"]:
        response = await client.get(f"/files/{file['file_id']}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(file["content_type"])
        sizes.append(Image.open(io.BytesIO(response.content)).size)
    return sizes


async def test_text_to_image_bills_each_output(gateway: Any) -> None:
    client, key = gateway
    body = {
        "service": "image-4090",
        "input": {"prompt": "a fox", "model": "playground-v2.5", "num_outputs": 2, "seed": 1},
    }
    job = await run_job(client, key, body)
    assert await downloaded_sizes(client, job) == [(32, 32), (32, 32)]
    assert job["output"]["seed"] == 1
    assert job["cost_usd"] == pytest.approx(0.02)  # two outputs at $0.01


async def test_img2img_redraws_the_fetched_image(gateway: Any, media: MediaServer) -> None:
    client, key = gateway
    url = media.add("start.png", png_bytes(48, 32), "image/png")
    body = {"service": "img2img", "input": {"image_url": url, "prompt": "oil", "strength": 0.9}}
    job = await run_job(client, key, body)
    assert await downloaded_sizes(client, job) == [(48, 32)]


async def test_inpaint_repaints_the_masked_area(gateway: Any, media: MediaServer) -> None:
    client, key = gateway
    image = media.add("photo.png", picture(32, 32), "image/png")
    mask = media.add("mask.png", picture(32, 32, mask=True), "image/png")
    body = {"service": "inpaint", "input": {"image_url": image, "mask_url": mask, "prompt": "x"}}
    job = await run_job(client, key, body)
    assert await downloaded_sizes(client, job) == [(32, 32)]


async def test_controlnet_follows_the_depth_of_the_reference(
    gateway: Any, media: MediaServer
) -> None:
    client, key = gateway
    url = media.add("ref.png", picture(32, 32), "image/png")
    data = {"image_url": url, "prompt": "a house", "control_type": "depth"}
    job = await run_job(client, key, {"service": "controlnet", "input": data})
    assert await downloaded_sizes(client, job) == [(32, 32)]
    assert job["output"]["control_type"] == "depth"


async def test_image_variation_needs_only_an_image(gateway: Any, media: MediaServer) -> None:
    client, key = gateway
    url = media.add("source.png", picture(32, 32), "image/png")
    body = {"service": "image-variation", "input": {"image_url": url, "num_outputs": 2}}
    job = await run_job(client, key, body)
    assert await downloaded_sizes(client, job) == [(32, 32), (32, 32)]


async def test_portrait_takes_the_face_photo(gateway: Any, media: MediaServer) -> None:
    client, key = gateway
    url = media.add("face.png", picture(40, 40), "image/png")
    body = {
        "service": "photomaker",
        "input": {"image_url": url, "prompt": "an astronaut", "style_strength": 0.3},
    }
    job = await run_job(client, key, body)
    assert await downloaded_sizes(client, job) == [(32, 32)]
