from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gpubridge.engines.base import EngineRequest, ModelRef, OutputFile
from gpubridge.engines.imaging.background_removal import BackgroundRemover, create
from gpubridge.errors import BackendError, InvalidInput
from tests.support.engine_calls import engine, media_input, request, run
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow


def remover(**options: Any) -> BackgroundRemover:
    return engine(create, "background-removal", name="rembg", **options)


def cut_out(source: Path, image: bytes | None = None, **inputs: Any) -> EngineRequest:
    options = inputs.pop("model_options", {})
    return request(
        "rembg-l4",
        inputs,
        media=media_input("image_url", image or png_bytes(40, 24)),
        model=ModelRef("birefnet", str(source), options),
    )


def opened(file: OutputFile) -> Image.Image:
    return Image.open(io.BytesIO(file.data))


async def test_the_cut_out_is_a_png_with_alpha_of_the_input_size(tiny_birefnet_dir: Path) -> None:
    result, events = await run(remover(), cut_out(tiny_birefnet_dir), unload=True)
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
    result, _ = await run(remover(), cut_out(tiny_birefnet_dir, return_mask=True), unload=True)
    mask = opened(result.output["mask"])
    assert mask.mode == "L"
    assert mask.size == (40, 24)
    assert mask.tobytes() == opened(result.output["image"]).getchannel("A").tobytes()


async def test_a_background_color_fills_the_background(tiny_birefnet_dir: Path) -> None:
    req = cut_out(tiny_birefnet_dir, background_color="#00ff00", output_format="webp")
    result, _ = await run(remover(), req, unload=True)
    assert result.output["image"].content_type == "image/webp"
    assert opened(result.output["image"]).mode == "RGB"


async def test_a_network_with_probabilities_and_a_dynamic_size_is_used_as_is(
    tiny_rmbg_dir: Path,
) -> None:
    options = {"output_activation": "none", "input_size": 16}
    result, _ = await run(remover(), cut_out(tiny_rmbg_dir, model_options=options), unload=True)
    assert opened(result.output["image"]).size == (40, 24)


async def test_auto_activation_leaves_probabilities_as_they_are(tiny_rmbg_dir: Path) -> None:
    masks = []
    for activation in ("none", "auto"):
        options = {"output_activation": activation, "input_size": 16}
        req = cut_out(tiny_rmbg_dir, return_mask=True, model_options=options)
        result, _ = await run(remover(), req, unload=True)
        masks.append(result.output["mask"].data)
    assert masks[0] == masks[1]


async def test_a_bad_background_color_is_invalid_input(tiny_birefnet_dir: Path) -> None:
    with pytest.raises(InvalidInput):
        await run(remover(), cut_out(tiny_birefnet_dir, background_color="#xyzxyz"), unload=True)


async def test_a_missing_model_file_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError):
        await run(remover(), cut_out(tmp_path), unload=True)


@pytest.mark.gpu
async def test_the_cut_out_runs_on_cuda(tiny_birefnet_dir: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here")
    result, _ = await run(remover(device="cuda"), cut_out(tiny_birefnet_dir), unload=True)
    assert opened(result.output["image"]).mode == "RGBA"
