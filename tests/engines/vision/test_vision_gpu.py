"""The vision engines on CUDA: the same loading and inference paths, in float16."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines import captioner, clip_interrogator, vision_language
from gpubridge.engines.base import EngineEvent, EngineRequest
from tests.support.engine_calls import engine, media_input, request
from tests.support.media_server import png_bytes

pytestmark = [pytest.mark.slow, pytest.mark.gpu]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


async def _discard(event: EngineEvent) -> None:
    pass


def _request(service: str, source: Path, **data: Any) -> EngineRequest:
    media = media_input("image_url", png_bytes())
    return request(service, data, media=media, model=source, job_id="job-gpu")


@pytest.mark.skipif(not _cuda(), reason="needs an NVIDIA GPU")
async def test_the_vision_engines_run_on_cuda_in_half_precision(
    tiny_llava_dir: Path, tiny_blip_dir: Path, tiny_clip_dir: Path
) -> None:
    options = {"device": "cuda", "dtype": "float16"}
    vlm = engine(vision_language.create, "transformers-vlm", name="vlm", **options)
    blip = engine(captioner.create, "blip-caption", name="blip", **options)
    clip = engine(
        clip_interrogator.create,
        "clip-interrogator",
        name="clip",
        **options,
        caption_model=str(tiny_blip_dir),
    )
    try:
        async with asyncio.timeout(120):
            answer = await vlm.run(
                _request("llava-4090", tiny_llava_dir, prompt="What?", max_tokens=4), _discard
            )
            caption = await blip.run(_request("caption", tiny_blip_dir, max_tokens=4), _discard)
            prompt = await clip.run(_request("clip", tiny_clip_dir, mode="best"), _discard)
    finally:
        for loaded in (vlm, blip, clip):
            await loaded.unload()
    assert 0 < answer.usage.completion_tokens <= 4
    assert caption.output["caption"]
    assert prompt.output["prompt"].startswith(prompt.output["caption"])
