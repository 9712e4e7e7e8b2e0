"""Segmentation behind POST /run, on a tiny SAM 2 loaded from a directory."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gpubridge.engines.mask_encoding import rle_area
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.media_server import MediaServer, png_bytes, serve_media

pytestmark = [pytest.mark.slow]

CREDIT = 10_000_000


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    with serve_media() as server:
        yield server


@pytest.fixture
async def gateway(
    database: object, database_url: str, tmp_path: Path, tiny_sam2_dir: Path
) -> AsyncIterator[Any]:
    def edit(data: dict[str, Any]) -> None:
        for model in data["services"]["segmentation"]["models"]:
            model["source"] = str(tiny_sam2_dir)
            model["options"] = {"device": "cpu", "pred_iou_thresh": -1.0}

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as pair:
        yield pair


async def finished(client: Any, response: Any, timeout_s: float = 60) -> dict[str, Any]:
    assert response.status_code in (200, 202), response.text
    job: dict[str, Any] = response.json()
    async with asyncio.timeout(timeout_s):
        while job["status"] not in ("completed", "failed", "cancelled"):
            await asyncio.sleep(0.05)
            job = (await client.get(f"/status/{job['job_id']}")).json()
    return job


async def test_box_prompts_give_mask_files_rle_and_polygons(
    gateway: Any, media: MediaServer
) -> None:
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    url = media.add("street.png", png_bytes(40, 30), "image/png")
    body = {
        "service": "segmentation",
        "input": {"image_url": url, "boxes": [[4, 4, 30, 25]], "multimask_output": True},
    }
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)))
    assert job["status"] == "completed", job
    assert job["backend"] == "local-sam2"
    output = job["output"]
    assert output["mode"] == "prompted"
    assert len(output["masks"]) == 3
    for view in output["masks"]:
        file = view["mask"]
        response = await client.get(f"/files/{file['file_id']}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("image/png")
        png = Image.open(io.BytesIO(response.content))
        assert png.size == (40, 30)
        assert rle_area(view["rle"]) == view["area"] == int((np.asarray(png) > 127).sum())
        assert bool(view["polygons"]) == (view["area"] > 0)
    assert job["usage"]["compute_seconds"] > 0
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"]


async def test_without_prompts_every_object_is_segmented(gateway: Any, media: MediaServer) -> None:
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    url = media.add("scene.png", png_bytes(32, 32), "image/png")
    body = {"service": "segmentation", "input": {"image_url": url, "points_per_side": 4}}
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)))
    assert job["status"] == "completed", job
    assert job["output"]["mode"] == "automatic"
    assert all(view["area"] > 0 for view in job["output"]["masks"])
