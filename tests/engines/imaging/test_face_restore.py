from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gpubridge.engines.base import EngineRequest, EngineResult, ModelRef
from gpubridge.engines.imaging.face_restore import FaceRestoration, create
from gpubridge.errors import BackendError, InvalidInput
from tests.support.engine_calls import Events, engine, media_input, request, run
from tests.support.media_server import png_bytes
from tests.support.tiny_imaging import face_png

pytestmark = pytest.mark.slow


def restorer(**options: Any) -> FaceRestoration:
    return engine(create, "face-restoration", name="faces", **options)


def codeformer(directory: Path, **options: Any) -> ModelRef:
    return ModelRef("codeformer", str(directory), {"onnx_file": "codeformer.onnx", **options})


def restore(model: ModelRef, image: bytes | None = None, **inputs: Any) -> EngineRequest:
    media = media_input("image_url", image or face_png())
    return request("face-restore", inputs, media=media, model=model)


async def restored(target: FaceRestoration, req: EngineRequest) -> tuple[EngineResult, Events]:
    return await run(target, req, unload=True)


def picture(result: EngineResult) -> Image.Image:
    return Image.open(io.BytesIO(result.output["image"].data)).convert("RGB")


async def test_a_detected_face_is_restored_and_the_image_upscaled(tiny_faces_dir: Path) -> None:
    result, events = await restored(restorer(), restore(codeformer(tiny_faces_dir), upscale=2))
    assert result.output["faces"] == 1
    assert result.output["image"].metadata["faces"] == 1
    assert picture(result).size == (192, 128)
    assert result.usage.outputs == 1
    assert result.usage.compute_seconds > 0
    assert "restoring_faces" in events.stages()


async def test_only_the_face_changes_and_fidelity_changes_it(tiny_faces_dir: Path) -> None:
    original = Image.open(io.BytesIO(face_png())).convert("RGB")
    model = codeformer(tiny_faces_dir)
    faithful, _ = await restored(restorer(), restore(model, upscale=1, fidelity=0.0))
    creative, _ = await restored(restorer(), restore(model, upscale=1, fidelity=1.0))
    a, b = picture(faithful), picture(creative)
    assert a.getpixel((5, 5)) == original.getpixel((5, 5))
    assert a.crop((36, 36, 60, 60)).tobytes() != original.crop((36, 36, 60, 60)).tobytes()
    assert a.tobytes() != b.tobytes()


async def test_gfpgan_has_no_fidelity_input(tiny_faces_dir: Path) -> None:
    model = ModelRef("gfpgan", str(tiny_faces_dir), {"onnx_file": "gfpgan_1.4.onnx"})
    result, _ = await restored(restorer(), restore(model, upscale=1, output_format="jpeg"))
    assert result.output["faces"] == 1
    assert result.output["image"].content_type == "image/jpeg"


async def test_a_picture_without_faces_is_only_upscaled(tiny_faces_dir: Path) -> None:
    image = png_bytes(32, 32)
    result, _ = await restored(restorer(), restore(codeformer(tiny_faces_dir), image, upscale=4))
    assert result.output["faces"] == 0
    assert picture(result).size == (128, 128)


async def test_background_enhance_upscales_with_swin2sr(
    tiny_faces_dir: Path, tiny_swin2sr_x2_dir: Path
) -> None:
    model = codeformer(tiny_faces_dir, background_upscaler=str(tiny_swin2sr_x2_dir))
    req = restore(model, upscale=2, background_enhance=True)
    result, events = await restored(restorer(tile_size=64), req)
    assert picture(result).size == (192, 128)
    assert result.output["faces"] == 1
    assert "upscaling" in events.stages()


async def test_out_of_range_settings_are_invalid_input(tiny_faces_dir: Path) -> None:
    with pytest.raises(InvalidInput):
        await restored(restorer(), restore(codeformer(tiny_faces_dir), upscale=3))
    with pytest.raises(InvalidInput):
        await restored(restorer(), restore(codeformer(tiny_faces_dir), fidelity=2))


async def test_a_missing_network_is_a_backend_error(tiny_faces_dir: Path) -> None:
    model = ModelRef("x", str(tiny_faces_dir), {"onnx_file": "absent.onnx"})
    with pytest.raises(BackendError):
        await restored(restorer(), restore(model))


@pytest.mark.gpu
async def test_face_restoration_runs_on_cuda(tiny_faces_dir: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here")
    result, _ = await restored(restorer(device="cuda"), restore(codeformer(tiny_faces_dir)))
    assert result.output["faces"] == 1
