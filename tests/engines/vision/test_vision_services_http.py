"""The vision services behind POST /run: tiny random BLIP, CLIP and LLaVA models loaded from
directories through the code that loads real weights, with images fetched from loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.media_server import MediaServer, png_bytes, serve_media

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    with serve_media() as server:
        yield server


@pytest.fixture
def sqlite_only(database_url: str) -> None:
    """Model end-to-end tests run on SQLite only (the database layer is tested on both)."""
    if not database_url.startswith("sqlite"):
        pytest.skip("model end-to-end tests run on SQLite only")


@pytest.fixture
async def vision_gateway(
    sqlite_only: None,
    database: object,
    database_url: str,
    tmp_path: Path,
    tiny_blip_dir: Path,
    tiny_clip_dir: Path,
    tiny_llava_dir: Path,
) -> AsyncIterator[Any]:

    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        for model in services["llava-4090"]["models"]:
            model["source"], model["options"] = str(tiny_llava_dir), {}
        for model in services["caption"]["models"]:
            model["source"] = str(tiny_blip_dir)
        for model in services["clip"]["models"]:
            model["source"] = str(tiny_clip_dir)
            model["options"] = {"caption_model": str(tiny_blip_dir)}

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    async with running_app(settings_for(database_url, tmp_path, catalog)) as (app, client):
        key = await register(client)
        await app.state.gateway.grant("you@example.com", 10_000_000)
        yield client, key


async def run(client: Any, key: str, service: str, **data: Any) -> dict[str, Any]:
    response = await client.post(
        "/run", json={"service": service, "input": data}, headers=auth(key)
    )
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    assert job["status"] == "completed", job
    assert 0 < job["cost_usd"] <= job["estimated_cost_usd"]
    return job


async def test_visual_questions_are_answered_and_charged(vision_gateway, media) -> None:
    client, key = vision_gateway
    image = media.add("vqa.png", png_bytes(), "image/png")
    job = await run(client, key, "llava-4090", image_url=image, prompt="What?", max_tokens=4)
    assert job["backend"] == "local-transformers-vlm"
    assert isinstance(job["output"]["text"], str)
    assert job["output"]["model"] == "moondream2"
    assert 0 < job["usage"]["completion_tokens"] <= 4


async def test_images_are_captioned_and_charged(vision_gateway, media) -> None:
    client, key = vision_gateway
    image = media.add("caption.png", png_bytes(seed=5), "image/png")
    job = await run(client, key, "caption", image_url=image, prompt="a picture of", max_tokens=4)
    assert job["backend"] == "local-blip"
    assert job["output"]["caption"].startswith("a picture of")


async def test_images_are_interrogated_into_prompts_and_charged(vision_gateway, media) -> None:
    client, key = vision_gateway
    image = media.add("clip.png", png_bytes(seed=9), "image/png")
    job = await run(client, key, "clip", image_url=image, mode="classic")
    assert job["backend"] == "local-clip-interrogator"
    output = job["output"]
    assert output["prompt"].startswith(output["caption"])
    assert {"text", "score"} <= set(output["artist"])
    assert len(output["flavors"]) == 3
