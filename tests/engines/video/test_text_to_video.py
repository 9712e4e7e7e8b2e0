from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.base import EngineEvent, EngineRequest, ModelRef
from gpubridge.engines.video.text_to_video import TextToVideo, VideoPipelines, create
from gpubridge.errors import BackendError, InvalidInput
from tests.engines.video.video_files import decoded
from tests.support.engine_calls import Events, engine, media_input, request, run
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow

WAIT_S = 120
TINY = {"width": 32, "height": 32, "num_frames": 9, "fps": 8, "num_inference_steps": 2}
TINY_TEXT = {**TINY, "max_sequence_length": 16}


def generator(**options: Any) -> TextToVideo:
    return engine(create, "diffusers-video", name="video", **options)


def video_request(model: ModelRef, image: bytes | None = None, **inputs: Any) -> EngineRequest:
    media = [media_input("image_url", image)] if image else []
    return request("video", {"prompt": "a cat runs", **inputs}, media=media, model=model)


@pytest.fixture(scope="module")
def ltx() -> Iterator[TextToVideo]:
    """One engine for the module: the tiny LTX pipeline stays resident between tests."""
    video = generator()
    yield video
    asyncio.run(video.unload())


async def test_ltx_makes_an_mp4_with_the_frames_asked_for(
    tiny_ltx_dir: Path, ltx: TextToVideo
) -> None:
    model = ModelRef("ltx-video", str(tiny_ltx_dir), TINY_TEXT)
    result, events = await run(ltx, video_request(model, seed=7, negative_prompt="blurry"))
    output = result.output
    assert (output["frames"], output["fps"], output["seed"]) == (9, 8, 7)
    assert (output["format"], output["codec"]) == ("mp4", "libx264")
    assert output["video"].content_type == "video/mp4"
    assert output["video"].metadata["duration_seconds"] == 1.125
    assert decoded(output["video"].data) == ("h264", 9, 32, 32)
    assert events.steps() == [(1, 2), (2, 2)]
    assert events.steps("encoding") == [(0, 1), (1, 1)]
    assert [e.data["stage"] for e in events[:2]] == ["loading_model", "model_loaded"]
    assert result.usage.outputs == 1
    assert result.usage.compute_seconds > 0


async def test_a_frame_count_is_rounded_to_what_the_vae_can_make(
    tiny_ltx_dir: Path, ltx: TextToVideo
) -> None:
    model = ModelRef("ltx-video", str(tiny_ltx_dir), TINY_TEXT)
    result, _ = await run(ltx, video_request(model, num_frames=11, num_inference_steps=1))
    assert result.output["frames"] == 9  # 4x temporal compression: 4k + 1 frames
    assert 0 <= result.output["seed"] <= 2**32 - 1


async def test_the_same_seed_makes_the_same_video(tiny_ltx_dir: Path, ltx: TextToVideo) -> None:
    model = ModelRef("ltx-video", str(tiny_ltx_dir), TINY_TEXT)
    first, _ = await run(ltx, video_request(model, seed=3, num_inference_steps=1))
    again, _ = await run(ltx, video_request(model, seed=3, num_inference_steps=1))
    assert first.output["video"].data == again.output["video"].data


async def test_an_image_makes_the_job_image_to_video_sharing_the_weights(
    tiny_ltx_dir: Path, ltx: TextToVideo
) -> None:
    model = ModelRef("ltx-video", str(tiny_ltx_dir), TINY_TEXT)
    result, events = await run(ltx, video_request(model, png_bytes(48, 40), seed=1))
    assert decoded(result.output["video"].data) == ("h264", 9, 32, 32)
    assert events.steps() == [(1, 2), (2, 2)]
    pipes = await ltx.pipeline(model)
    assert isinstance(pipes, VideoPipelines)
    assert type(pipes.image).__name__ == "LTXImageToVideoPipeline"
    assert pipes.image.transformer is pipes.text.transformer


async def test_a_portrait_first_frame_turns_the_default_size_upright(
    tiny_ltx_dir: Path, ltx: TextToVideo
) -> None:
    model = ModelRef("ltx-video", str(tiny_ltx_dir), {**TINY_TEXT, "width": 64, "height": 32})
    upright, _ = await run(ltx, video_request(model, png_bytes(20, 40), num_inference_steps=1))
    assert decoded(upright.output["video"].data) == ("h264", 9, 32, 64)
    asked, _ = await run(
        ltx, video_request(model, png_bytes(20, 40), num_inference_steps=1, width=64)
    )
    assert decoded(asked.output["video"].data) == ("h264", 9, 64, 32)


async def test_a_cancelled_job_stops_at_the_next_step(tiny_ltx_dir: Path, ltx: TextToVideo) -> None:
    model = ModelRef("ltx-video", str(tiny_ltx_dir), {**TINY_TEXT, "num_inference_steps": 200})
    events = Events()
    started = asyncio.Event()

    async def emit(event: EngineEvent) -> None:
        events.append(event)
        if event.data.get("stage") == "denoising":
            started.set()

    task = asyncio.create_task(ltx.run(video_request(model, seed=1), emit))
    async with asyncio.timeout(WAIT_S):
        await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The engine is free again.
    result, _ = await run(ltx, video_request(model, num_inference_steps=1))
    assert result.output["frames"] == 9
    assert max(step for step, _ in events.steps()) < 200


async def test_wan_is_selectable_and_refuses_an_image(tiny_wan_dir: Path) -> None:
    video = generator()
    model = ModelRef("wan2.1-t2v-1.3b", str(tiny_wan_dir), {**TINY_TEXT, "num_frames": 5})
    try:
        result, events = await run(video, video_request(model, seed=2, guidance_scale=1.0))
        assert type((await video.pipeline(model)).text).__name__ == "WanPipeline"
        assert decoded(result.output["video"].data) == ("h264", 5, 32, 32)
        assert events.steps() == [(1, 2), (2, 2)]
        with pytest.raises(InvalidInput):
            await run(video, video_request(model, png_bytes(32, 32)))
    finally:
        await video.unload()


async def test_a_missing_model_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError):
        await run(generator(), video_request(ModelRef("ltx-video", str(tmp_path / "none"), TINY)))


async def test_a_missing_prompt_is_invalid_input(tiny_ltx_dir: Path, ltx: TextToVideo) -> None:
    model = ModelRef("ltx-video", str(tiny_ltx_dir), TINY_TEXT)
    with pytest.raises(InvalidInput):
        await run(ltx, request("video", model=model))


@pytest.mark.gpu
async def test_ltx_and_wan_run_on_cuda(tiny_ltx_dir: Path, tiny_wan_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    video = generator(device="cuda")
    try:
        ltx_model = ModelRef("ltx-video", str(tiny_ltx_dir), {**TINY_TEXT, "dtype": "bfloat16"})
        result, _ = await run(video, video_request(ltx_model, png_bytes(32, 32), seed=1))
        assert decoded(result.output["video"].data) == ("h264", 9, 32, 32)
        wan = {**TINY_TEXT, "num_frames": 5, "dtype": "bfloat16", "vae_dtype": "float32"}
        result, _ = await run(video, video_request(ModelRef("wan", str(tiny_wan_dir), wan), seed=1))
        assert decoded(result.output["video"].data) == ("h264", 5, 32, 32)
    finally:
        await video.unload()
