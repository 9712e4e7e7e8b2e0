from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.base import EngineRequest, ModelRef
from gpubridge.engines.video.animate import Animate, create
from gpubridge.errors import InvalidInput
from tests.engines.video.video_files import decoded
from tests.support.engine_calls import engine, media_input, request, run
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow

TINY = {"width": 32, "height": 32, "num_inference_steps": 2, "decode_chunk_size": 2}


def animator(**options: Any) -> Animate:
    return engine(create, "diffusers-animate", name="animate", **options)


def animate_request(model: ModelRef, image: bytes | None, **inputs: Any) -> EngineRequest:
    media = [media_input("image_url", image)] if image else []
    return request("animate", inputs, media=media, model=model)


@pytest.fixture(scope="module")
def svd() -> Iterator[Animate]:
    """One engine for the module: the tiny SVD pipeline stays resident between tests."""
    animate = animator()
    yield animate
    asyncio.run(animate.unload())


async def test_an_image_is_animated_into_an_mp4(tiny_svd_dir: Path, svd: Animate) -> None:
    model = ModelRef("svd-xt", str(tiny_svd_dir), TINY)
    req = animate_request(
        model, png_bytes(48, 40), num_frames=3, fps=6, motion_bucket_id=60, seed=5
    )
    result, events = await run(svd, req)
    output = result.output
    assert (output["frames"], output["fps"], output["seed"]) == (3, 6, 5)
    assert output["video"].metadata["duration_seconds"] == 0.5
    assert decoded(output["video"].data) == ("h264", 3, 32, 32)
    assert events.steps() == [(1, 2), (2, 2)]
    assert events.steps("encoding")[-1] == (1, 1)
    assert result.usage.outputs == 1
    assert result.usage.compute_seconds > 0


async def test_a_portrait_image_makes_a_portrait_clip(tiny_svd_dir: Path, svd: Animate) -> None:
    model = ModelRef("svd-xt", str(tiny_svd_dir), {**TINY, "width": 48, "height": 32})
    req = animate_request(model, png_bytes(20, 40), num_frames=2, noise_aug_strength=0.1, seed=1)
    result, _ = await run(svd, req)
    assert decoded(result.output["video"].data) == ("h264", 2, 32, 48)


async def test_the_same_seed_makes_the_same_clip(tiny_svd_dir: Path, svd: Animate) -> None:
    model = ModelRef("svd-xt", str(tiny_svd_dir), {**TINY, "num_inference_steps": 1})
    first, _ = await run(svd, animate_request(model, png_bytes(), num_frames=2, seed=9))
    again, _ = await run(svd, animate_request(model, png_bytes(), num_frames=2, seed=9))
    assert first.output["video"].data == again.output["video"].data


async def test_an_image_is_required(tiny_svd_dir: Path, svd: Animate) -> None:
    model = ModelRef("svd-xt", str(tiny_svd_dir), TINY)
    with pytest.raises(InvalidInput):
        await run(svd, animate_request(model, None))
    with pytest.raises(InvalidInput):
        await run(svd, animate_request(model, b"not a png"))


@pytest.mark.gpu
async def test_animation_runs_on_cuda(tiny_svd_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = ModelRef("svd-xt", str(tiny_svd_dir), TINY)
    animate = animator(device="cuda")
    try:
        result, _ = await run(animate, animate_request(model, png_bytes(), num_frames=3, seed=1))
        assert decoded(result.output["video"].data) == ("h264", 3, 32, 32)
    finally:
        await animate.unload()
