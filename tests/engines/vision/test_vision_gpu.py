"""The vision engines on CUDA: the same loading and inference paths, in float16."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines import captioner, clip_interrogator, vision_language
from gpubridge.engines.base import (
    BackendConfig,
    EngineContext,
    EngineEvent,
    EngineRequest,
    MediaInput,
    ModelRef,
)
from tests.support.media_server import png_bytes

pytestmark = [pytest.mark.slow, pytest.mark.gpu]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


async def _discard(event: EngineEvent) -> None:
    pass


def _request(service: str, source: Path, **data: Any) -> EngineRequest:
    media = {"image_url": MediaInput("image_url", png_bytes(), "image/png")}
    return EngineRequest("job-gpu", service, ModelRef("tiny", str(source)), data, media)


@pytest.mark.skipif(not _cuda(), reason="needs an NVIDIA GPU")
async def test_the_vision_engines_run_on_cuda_in_half_precision(
    tiny_llava_dir: Path, tiny_blip_dir: Path, tiny_clip_dir: Path
) -> None:
    options = {"device": "cuda", "dtype": "float16"}
    vlm = vision_language.create(
        BackendConfig(name="vlm", type="transformers-vlm", options=options), EngineContext()
    )
    blip = captioner.create(
        BackendConfig(name="blip", type="blip-caption", options=options), EngineContext()
    )
    clip = clip_interrogator.create(
        BackendConfig(
            name="clip",
            type="clip-interrogator",
            options={**options, "caption_model": str(tiny_blip_dir)},
        ),
        EngineContext(),
    )
    try:
        async with asyncio.timeout(120):
            answer = await vlm.run(
                _request("llava-4090", tiny_llava_dir, prompt="What?", max_tokens=4), _discard
            )
            caption = await blip.run(_request("caption", tiny_blip_dir, max_tokens=4), _discard)
            prompt = await clip.run(_request("clip", tiny_clip_dir, mode="best"), _discard)
    finally:
        for engine in (vlm, blip, clip):
            await engine.unload()
    assert 0 < answer.usage.completion_tokens <= 4
    assert caption.output["caption"]
    assert prompt.output["prompt"].startswith(prompt.output["caption"])
