from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.base import EngineEvent, EngineRequest, ModelRef
from gpubridge.engines.vision_language import VisionLanguage, create
from gpubridge.errors import BackendError, InvalidInput
from tests.support.engine_calls import Events, media_input, run
from tests.support.engine_calls import engine as make_engine
from tests.support.engine_calls import request as make_request
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow

WAIT_S = 60


def engine() -> VisionLanguage:
    return make_engine(create, "transformers-vlm", name="local-vlm")


def request(source: Path, options: dict[str, Any] | None = None, **data: Any) -> EngineRequest:
    model = ModelRef("tiny-vlm", str(source), options or {})
    return make_request(
        "llava-4090", data, media=media_input("image_url", png_bytes()), model=model
    )


async def ask(vlm: VisionLanguage, req: EngineRequest) -> tuple[Any, Events]:
    return await run(vlm, req, timeout_s=WAIT_S)


async def test_a_question_about_an_image_streams_the_answer(tiny_llava_dir: Path) -> None:
    vlm = engine()
    try:
        result, events = await ask(
            vlm, request(tiny_llava_dir, prompt="What is in the picture?", max_tokens=6)
        )
    finally:
        await vlm.unload()
    assert set(result.output) == {"text", "model"}
    assert result.output["model"] == "tiny-vlm"
    assert events.text == result.output["text"]
    assert any(e.kind == "token" for e in events)
    assert events.stages() == ["loading_model", "model_loaded"]
    # The prompt holds the chat template and one token per image patch (4x4 patches).
    assert result.usage.prompt_tokens > 16
    assert 0 < result.usage.completion_tokens <= 6
    assert result.usage.compute_seconds > 0


async def test_sampling_with_a_temperature_also_answers(tiny_llava_dir: Path) -> None:
    vlm = engine()
    try:
        result, _ = await ask(
            vlm, request(tiny_llava_dir, prompt="Describe it", max_tokens=3, temperature=0.8)
        )
    finally:
        await vlm.unload()
    assert 0 < result.usage.completion_tokens <= 3


async def test_missing_prompt_or_image_is_invalid_input(tiny_llava_dir: Path) -> None:
    vlm = engine()
    with pytest.raises(InvalidInput):
        await vlm.run(request(tiny_llava_dir), Events())
    no_image = make_request(
        "llava-4090", {"prompt": "?"}, model=ModelRef("t", str(tiny_llava_dir)), job_id="j"
    )
    with pytest.raises(InvalidInput):
        await vlm.run(no_image, Events())


async def test_a_model_that_cannot_load_is_a_backend_error(tmp_path: Path) -> None:
    vlm = engine()
    with pytest.raises(BackendError):
        await vlm.run(request(tmp_path, prompt="?"), Events())


REMOTE = {"trust_remote_code": True, "revision": "main"}


async def test_remote_code_models_answer_through_their_query_api(tiny_query_dir: Path) -> None:
    vlm = engine()
    try:
        result, events = await ask(
            vlm, request(tiny_query_dir, REMOTE, prompt="What is it?", max_tokens=5)
        )
    finally:
        await vlm.unload()
    assert len(result.output["text"]) == 5
    assert events.text == result.output["text"]
    assert len([e for e in events if e.kind == "token"]) == 5
    assert result.usage.completion_tokens == 5
    assert result.usage.compute_seconds > 0


def test_remote_code_buffers_computed_at_init_survive_loading(tiny_query_dir: Path) -> None:
    import torch

    from gpubridge.engines.vision_language import load_vlm

    loaded = load_vlm(str(tiny_query_dir), {**REMOTE, "device": "cpu"})
    assert loaded.processor is None
    assert torch.equal(loaded.model.phase, torch.arange(8, dtype=torch.float32) / 8)


async def test_remote_code_is_refused_unless_the_catalog_trusts_it(tiny_query_dir: Path) -> None:
    vlm = engine()
    with pytest.raises(BackendError):
        await vlm.run(request(tiny_query_dir, prompt="?"), Events())


async def test_cancelling_a_job_stops_generation(tiny_llava_dir: Path) -> None:
    vlm = engine()
    first_token = asyncio.Event()

    async def on_event(event: EngineEvent) -> None:
        if event.kind == "token":
            first_token.set()

    try:
        job = asyncio.ensure_future(
            vlm.run(request(tiny_llava_dir, prompt="Tell me", max_tokens=2000), on_event)
        )
        async with asyncio.timeout(WAIT_S):
            await first_token.wait()
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
            # The model is free again: a next job runs to completion.
            result, _ = await ask(vlm, request(tiny_llava_dir, prompt="Again", max_tokens=2))
    finally:
        await vlm.unload()
    assert 0 < result.usage.completion_tokens <= 2
