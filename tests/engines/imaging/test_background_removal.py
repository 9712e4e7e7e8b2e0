from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gpubridge.engines.base import (
    BackendConfig,
    EngineContext,
    EngineEvent,
    EngineRequest,
    EngineResult,
    MediaInput,
    ModelRef,
    OutputFile,
)
from gpubridge.engines.imaging.background_removal import BackgroundRemover, create
from gpubridge.errors import BackendError, InvalidInput
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow

WAIT_S = 60


def engine(**options: Any) -> BackgroundRemover:
    config = BackendConfig(name="rembg", type="background-removal", options=options)
    return create(config, EngineContext())


def request(source: Path, image: bytes | None = None, **inputs: Any) -> EngineRequest:
    media = {"image_url": MediaInput("image_url", image or png_bytes(40, 24), "image/png")}
    options = inputs.pop("model_options", {})
    model = ModelRef("birefnet", str(source), options)
    return EngineRequest("job-1", "rembg-l4", model, inputs, media)


async def run(remover: BackgroundRemover, req: EngineRequest) -> tuple[EngineResult, list[Any]]:
    events: list[EngineEvent] = []

    async def emit(event: EngineEvent) -> None:
        events.append(event)

    try:
        async with asyncio.timeout(WAIT_S):
            return await remover.run(req, emit), events
    finally:
        await remover.unload()


def opened(file: OutputFile) -> Image.Image:
    return Image.open(io.BytesIO(file.data))


async def test_the_cut_out_is_a_png_with_alpha_of_the_input_size(tiny_birefnet_dir: Path) -> None:
    result, events = await run(engine(), request(tiny_birefnet_dir))
    image = result.output["image"]
    assert isinstance(image, OutputFile)
    assert image.content_type == "image/png"
    assert (image.metadata["width"], image.metadata["height"]) == (40, 24)
    picture = opened(image)
    assert picture.mode == "RGBA"
    lowest, highest = picture.getchannel("A").getextrema()
    assert isinstance(lowest, int) and isinstance(highest, int)
    assert lowest < highest
    assert "mask" not in result.output
    assert result.usage.outputs == 1
    assert result.usage.compute_seconds > 0
    assert [e.data["stage"] for e in events] == ["loading_model", "model_loaded"]


async def test_return_mask_adds_the_alpha_mask(tiny_birefnet_dir: Path) -> None:
    result, _ = await run(engine(), request(tiny_birefnet_dir, return_mask=True))
    mask = opened(result.output["mask"])
    assert mask.mode == "L"
    assert mask.size == (40, 24)
    assert mask.tobytes() == opened(result.output["image"]).getchannel("A").tobytes()


async def test_a_background_color_fills_the_background(tiny_birefnet_dir: Path) -> None:
    req = request(tiny_birefnet_dir, background_color="#00ff00", output_format="webp")
    result, _ = await run(engine(), req)
    assert result.output["image"].content_type == "image/webp"
    assert opened(result.output["image"]).mode == "RGB"


async def test_a_network_with_probabilities_and_a_dynamic_size_is_used_as_is(
    tiny_rmbg_dir: Path,
) -> None:
    options = {"output_activation": "none", "input_size": 16}
    result, _ = await run(engine(), request(tiny_rmbg_dir, model_options=options))
    assert opened(result.output["image"]).size == (40, 24)


async def test_auto_activation_leaves_probabilities_as_they_are(tiny_rmbg_dir: Path) -> None:
    masks = []
    for activation in ("none", "auto"):
        options = {"output_activation": activation, "input_size": 16}
        req = request(tiny_rmbg_dir, return_mask=True, model_options=options)
        result, _ = await run(engine(), req)
        masks.append(result.output["mask"].data)
    assert masks[0] == masks[1]


async def test_a_bad_background_color_is_invalid_input(tiny_birefnet_dir: Path) -> None:
    with pytest.raises(InvalidInput):
        await run(engine(), request(tiny_birefnet_dir, background_color="#xyzxyz"))


async def test_a_missing_model_file_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError):
        await run(engine(), request(tmp_path))


@pytest.mark.gpu
async def test_the_cut_out_runs_on_cuda(tiny_birefnet_dir: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here")
    result, _ = await run(engine(device="cuda"), request(tiny_birefnet_dir))
    assert opened(result.output["image"]).mode == "RGBA"
