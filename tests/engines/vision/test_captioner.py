from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.base import EngineRequest, ModelRef
from gpubridge.engines.captioner import BlipCaptioner, create
from gpubridge.errors import InvalidInput
from tests.support.engine_calls import Events, media_input
from tests.support.engine_calls import engine as make_engine
from tests.support.engine_calls import request as make_request
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow

WAIT_S = 60


def engine(**options: Any) -> BlipCaptioner:
    return make_engine(create, "blip-caption", name="local-blip", **options)


def request(source: Path, image: bytes | None = None, **data: Any) -> EngineRequest:
    media = media_input("image_url", image or png_bytes())
    return make_request("caption", data, media=media, model=ModelRef("tiny-blip", str(source)))


async def test_an_image_gets_a_caption_with_its_token_usage(tiny_blip_dir: Path) -> None:
    blip, events = engine(), Events()
    try:
        async with asyncio.timeout(WAIT_S):
            result = await blip.run(request(tiny_blip_dir, max_tokens=5), events)
    finally:
        await blip.unload()
    assert set(result.output) == {"caption", "model"}
    assert isinstance(result.output["caption"], str) and result.output["caption"]
    assert result.output["model"] == "tiny-blip"
    assert 0 < result.usage.completion_tokens <= 5
    assert result.usage.compute_seconds > 0
    assert events.stages() == ["loading_model", "model_loaded"]


async def test_a_prompt_starts_the_caption(tiny_blip_dir: Path) -> None:
    blip = engine()
    try:
        async with asyncio.timeout(WAIT_S):
            result = await blip.run(
                request(tiny_blip_dir, prompt="a photograph of", max_tokens=3), Events()
            )
    finally:
        await blip.unload()
    assert result.output["caption"].startswith("a photograph of")
    assert result.usage.prompt_tokens > 1
    assert 0 < result.usage.completion_tokens <= 3


async def test_the_model_stays_loaded_between_jobs(tiny_blip_dir: Path) -> None:
    blip, second = engine(), Events()
    try:
        async with asyncio.timeout(WAIT_S):
            await blip.run(request(tiny_blip_dir, max_tokens=2), Events())
            await blip.run(request(tiny_blip_dir, max_tokens=2), second)
    finally:
        await blip.unload()
    assert second.stages() == []


async def test_unreadable_images_and_bad_limits_are_invalid_input(tiny_blip_dir: Path) -> None:
    blip = engine()
    try:
        with pytest.raises(InvalidInput):
            await blip.run(request(tiny_blip_dir, image=b"not an image"), Events())
        with pytest.raises(InvalidInput):
            await blip.run(request(tiny_blip_dir, max_tokens=0), Events())
        with pytest.raises(InvalidInput):
            await blip.run(
                make_request("caption", model=ModelRef("t", str(tiny_blip_dir)), job_id="j"),
                Events(),
            )
    finally:
        await blip.unload()
