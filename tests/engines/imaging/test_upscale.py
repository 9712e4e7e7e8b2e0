from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gpubridge.engines.base import EngineRequest, EngineResult, ModelRef
from gpubridge.engines.imaging.upscale import SuperResolution, create, tiles
from gpubridge.errors import BackendError, InvalidInput
from tests.support.engine_calls import Events, engine, media_input, request, run
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow


def upscaler(**options: Any) -> SuperResolution:
    return engine(create, "super-resolution", name="sr", **options)


def upscale(model: ModelRef, width: int = 20, height: int = 12, **inputs: Any) -> EngineRequest:
    media = media_input("image_url", png_bytes(width, height))
    return request("upscale-l4", inputs, media=media, model=model)


async def upscaled(sr: SuperResolution, req: EngineRequest) -> tuple[EngineResult, Events]:
    return await run(sr, req, unload=True)


def size_of(result: EngineResult) -> tuple[int, int]:
    return Image.open(io.BytesIO(result.output["image"].data)).size


def test_tiles_cover_the_image_without_overlap() -> None:
    boxes = tiles(20, 12, 8)
    assert boxes[0] == (0, 0, 8, 8)
    assert boxes[-1] == (16, 8, 20, 12)
    assert sum((r - left) * (b - t) for left, t, r, b in boxes) == 20 * 12


async def test_scale_picks_the_checkpoint_trained_for_it(
    tiny_swin2sr_x2_dir: Path, tiny_swin2sr_x4_dir: Path
) -> None:
    checkpoints = {"2": str(tiny_swin2sr_x2_dir), "4": str(tiny_swin2sr_x4_dir)}
    model = ModelRef("swin2sr", str(tiny_swin2sr_x4_dir), {"checkpoints": checkpoints})
    sr = upscaler()
    two, _ = await upscaled(sr, upscale(model, scale=2))
    four, _ = await upscaled(sr, upscale(model, scale=4, output_format="jpeg"))
    assert size_of(two) == (40, 24)
    assert size_of(four) == (80, 48)
    assert four.output["image"].content_type == "image/jpeg"
    assert four.output["image"].metadata["scale"] == 4
    assert four.usage.outputs == 1
    assert four.usage.compute_seconds > 0


async def test_a_large_image_is_upscaled_tile_by_tile(tiny_swin2sr_x2_dir: Path) -> None:
    model = ModelRef("swin2sr", str(tiny_swin2sr_x2_dir))
    result, events = await upscaled(upscaler(tile_size=8, tile_overlap=2), upscale(model, scale=2))
    assert size_of(result) == (40, 24)
    assert events.steps("upscaling") == [(step, 6) for step in range(1, 7)]


async def test_tiling_matches_a_single_pass_away_from_the_seams(tiny_swin2sr_x2_dir: Path) -> None:
    model = ModelRef("swin2sr", str(tiny_swin2sr_x2_dir))
    whole, _ = await upscaled(upscaler(tile_size=64), upscale(model, 16, 16, scale=2))
    tiled, _ = await upscaled(
        upscaler(tile_size=8, tile_overlap=8), upscale(model, 16, 16, scale=2)
    )
    a = Image.open(io.BytesIO(whole.output["image"].data))
    b = Image.open(io.BytesIO(tiled.output["image"].data))
    assert a.size == b.size == (32, 32)
    differences = [abs(p - q) for p, q in zip(a.tobytes(), b.tobytes(), strict=True)]
    assert max(differences) <= 64


async def test_an_x2_model_runs_twice_for_scale_4(tiny_swin2sr_x2_dir: Path) -> None:
    model = ModelRef("swin2sr", str(tiny_swin2sr_x2_dir))
    result, events = await upscaled(upscaler(tile_size=16), upscale(model, scale=4))
    assert size_of(result) == (80, 48)
    assert events.steps("upscaling")[-1] == (8, 8)  # 2 tiles at 20x12, then 6 at 40x24


async def test_an_x4_model_is_resized_down_for_scale_2(tiny_swin2sr_x4_dir: Path) -> None:
    model = ModelRef("swin2sr-realworld", str(tiny_swin2sr_x4_dir))
    result, _ = await upscaled(upscaler(), upscale(model, scale=2))
    assert size_of(result) == (40, 24)


async def test_an_unknown_scale_is_invalid_input(tiny_swin2sr_x2_dir: Path) -> None:
    with pytest.raises(InvalidInput):
        await upscaled(upscaler(), upscale(ModelRef("m", str(tiny_swin2sr_x2_dir)), scale=3))


async def test_a_missing_checkpoint_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError):
        await upscaled(upscaler(), upscale(ModelRef("m", str(tmp_path)), scale=2))


@pytest.mark.gpu
async def test_upscaling_runs_on_cuda(tiny_swin2sr_x2_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = ModelRef("swin2sr", str(tiny_swin2sr_x2_dir))
    result, _ = await upscaled(upscaler(device="cuda", tile_size=8), upscale(model, scale=2))
    assert size_of(result) == (40, 24)
