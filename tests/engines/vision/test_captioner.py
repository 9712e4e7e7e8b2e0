from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.base import (
    BackendConfig,
    EngineContext,
    EngineEvent,
    EngineRequest,
    MediaInput,
    ModelRef,
)
from gpubridge.engines.captioner import BlipCaptioner, create
from gpubridge.errors import InvalidInput
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow

WAIT_S = 60


class Events:
    def __init__(self) -> None:
        self.events: list[EngineEvent] = []

    async def __call__(self, event: EngineEvent) -> None:
        self.events.append(event)

    def stages(self) -> list[str]:
        return [e.data.get("stage", "") for e in self.events if e.kind == "progress"]


def engine(**options: Any) -> BlipCaptioner:
    config = BackendConfig(name="local-blip", type="blip-caption", options=options)
    return create(config, EngineContext())


def request(source: Path, image: bytes | None = None, **data: Any) -> EngineRequest:
    media = {"image_url": MediaInput("image_url", image or png_bytes(), "image/png")}
    return EngineRequest("job-1", "caption", ModelRef("tiny-blip", str(source)), data, media)


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
                EngineRequest("j", "caption", ModelRef("t", str(tiny_blip_dir)), {}), Events()
            )
    finally:
        await blip.unload()
