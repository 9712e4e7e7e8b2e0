from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.base import EngineRequest, EngineResult, ModelRef
from gpubridge.engines.florence_ocr import FlorenceOCR, create, load_florence, regions_from
from gpubridge.errors import BackendError, InvalidInput
from tests.support.engine_calls import Events, engine, media_input, request, run
from tests.support.media_server import png_bytes
from tests.support.tiny_florence import IMAGE_TOKENS

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 32


def florence(**options: Any) -> FlorenceOCR:
    options = {"max_new_tokens": MAX_NEW_TOKENS, "num_beams": 2, **options}
    return engine(create, "florence-ocr", name="florence", **options)


def ocr_request(source: Path | str, **payload: Any) -> EngineRequest:
    return request(
        "ocr",
        {"image_url": "x", **payload},
        media=media_input("image_url", png_bytes(40, 30)),
        model=ModelRef("florence-tiny", str(source), {"device": "cpu"}),
    )


async def read(ocr: FlorenceOCR, req: EngineRequest) -> tuple[EngineResult, Events]:
    return await run(ocr, req, unload=True)


async def test_ocr_returns_text_without_regions_and_token_usage(tiny_florence_dir: Path) -> None:
    result, events = await read(florence(), ocr_request(tiny_florence_dir))
    output = result.output
    assert output["task"] == "ocr"
    assert isinstance(output["text"], str)
    assert output["regions"] == []
    assert (output["width"], output["height"]) == (40, 30)
    assert result.usage.prompt_tokens > IMAGE_TOKENS
    assert 0 < result.usage.completion_tokens <= MAX_NEW_TOKENS
    assert result.usage.compute_seconds > 0
    stages = events.stages()
    assert stages[:2] == ["loading_model", "model_loaded"]
    assert "generating" in stages


async def test_ocr_with_region_returns_a_list_of_quadrilateral_regions(
    tiny_florence_dir: Path,
) -> None:
    result, _ = await read(florence(), ocr_request(tiny_florence_dir, task="ocr_with_region"))
    output = result.output
    assert output["task"] == "ocr_with_region"
    assert output["regions"], "the seeded tiny model emits location tokens"
    for region in output["regions"]:
        assert set(region) == {"text", "quad", "box"}
        assert len(region["quad"]) == 8
        x1, y1, x2, y2 = region["box"]
        assert x1 <= x2 and y1 <= y2
    assert output["text"] == "\n".join(r["text"] for r in output["regions"] if r["text"])


def test_the_processor_parses_location_tokens_into_pixel_quadrilaterals(
    tiny_florence_dir: Path,
) -> None:
    loaded = load_florence(str(tiny_florence_dir), "cpu", None)
    locations = "".join(f"<loc_{v}>" for v in (0, 0, 499, 0, 499, 999, 0, 999))
    raw = f"</s><s>STOP{locations}hello{locations}</s>"
    parsed = loaded.processor.post_process_generation(
        raw, task="<OCR_WITH_REGION>", image_size=(200, 100)
    )["<OCR_WITH_REGION>"]
    regions = regions_from(parsed)
    assert [r["text"] for r in regions] == ["STOP", "hello"]
    assert regions[0]["quad"] == [0.0, 0.0, 99.0, 0.0, 99.0, 99.0, 0.0, 99.0]
    assert regions[0]["box"] == [0.0, 0.0, 99.0, 99.0]


async def test_an_unknown_task_is_invalid_input(tiny_florence_dir: Path) -> None:
    with pytest.raises(InvalidInput):
        await read(florence(), ocr_request(tiny_florence_dir, task="caption"))


async def test_a_missing_checkpoint_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError):
        await read(florence(), ocr_request(tmp_path / "absent"))


@pytest.mark.gpu
async def test_ocr_with_region_runs_on_cuda_in_half_precision(tiny_florence_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    base = ocr_request(tiny_florence_dir, task="ocr_with_region")
    model = ModelRef("florence-tiny", str(tiny_florence_dir))
    req = EngineRequest("job-1", "ocr", model, base.input, base.media)
    result, _ = await read(florence(device="cuda"), req)
    assert isinstance(result.output["regions"], list)
    assert result.usage.completion_tokens > 0
