"""OCR behind POST /run, on a tiny Florence-2 loaded from a directory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

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
    database: object, database_url: str, tmp_path: Path, tiny_florence_dir: Path
) -> AsyncIterator[Any]:
    def edit(data: dict[str, Any]) -> None:
        for model in data["services"]["ocr"]["models"]:
            model["source"] = str(tiny_florence_dir)
            model["options"] = {"max_new_tokens": 16, "num_beams": 1, "device": "cpu"}

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


async def test_ocr_with_region_reads_an_image_url_and_charges_compute_time(
    gateway: Any, media: MediaServer
) -> None:
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", CREDIT)
    url = media.add("receipt.png", png_bytes(48, 32), "image/png")
    body = {"service": "ocr", "input": {"image_url": url, "task": "ocr_with_region"}}
    job = await finished(client, await client.post("/run", json=body, headers=auth(key)))
    assert job["status"] == "completed", job
    assert job["backend"] == "local-florence"
    output = job["output"]
    assert output["task"] == "ocr_with_region"
    assert isinstance(output["text"], str)
    assert isinstance(output["regions"], list)
    assert (output["width"], output["height"]) == (48, 32)
    assert job["usage"]["compute_seconds"] > 0
    assert job["usage"]["completion_tokens"] > 0
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"]
