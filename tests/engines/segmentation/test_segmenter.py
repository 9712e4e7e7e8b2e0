from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gpubridge.engines.base import EngineRequest, EngineResult, ModelRef, OutputFile
from gpubridge.engines.mask_encoding import rle_area, rle_decode
from gpubridge.engines.segmenter import Sam2Segmenter, create
from gpubridge.errors import InvalidInput
from tests.support.engine_calls import Events, engine, media_input, request, run
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 40, 30
# Random weights score low: let every non-empty candidate through in automatic mode.
OPEN_FILTERS = {"pred_iou_thresh": -1.0, "stability_score_thresh": 0.0, "points_per_side": 4}


def sam2(**options: Any) -> Sam2Segmenter:
    return engine(create, "sam2-segmentation", name="sam2", **options)


def sam2_request(source: Path, **payload: Any) -> EngineRequest:
    return request(
        "segmentation",
        {"image_url": "x", **payload},
        media=media_input("image_url", png_bytes(WIDTH, HEIGHT)),
        model=ModelRef("sam2-tiny", str(source), {"device": "cpu"}),
    )


async def segment(segmenter: Sam2Segmenter, req: EngineRequest) -> tuple[EngineResult, Events]:
    return await run(segmenter, req, unload=True)


def check_mask(view: dict[str, Any]) -> np.ndarray:
    """Every encoding of one mask agrees: PNG of the input size, RLE, area, box, polygons."""
    assert isinstance(view["mask"], OutputFile)
    png = Image.open(io.BytesIO(view["mask"].data))
    assert png.size == (WIDTH, HEIGHT)
    mask = np.asarray(png) > 127
    assert view["rle"]["size"] == [HEIGHT, WIDTH]
    assert rle_area(view["rle"]) == view["area"] == int(mask.sum())
    assert np.array_equal(rle_decode(view["rle"]), mask)
    x1, y1, x2, y2 = view["box"]
    assert 0 <= x1 <= x2 <= WIDTH and 0 <= y1 <= y2 <= HEIGHT
    if view["area"]:
        assert view["polygons"] and all(len(p) >= 6 for p in view["polygons"])
    assert isinstance(view["score"], float)
    return mask


async def test_a_point_prompt_gives_one_mask_of_the_image_size(tiny_sam2_dir: Path) -> None:
    req = sam2_request(tiny_sam2_dir, points=[[20, 15], [5, 5]], point_labels=[1, 0])
    result, _ = await segment(sam2(), req)
    assert result.output["mode"] == "prompted"
    assert (result.output["width"], result.output["height"]) == (WIDTH, HEIGHT)
    [view] = result.output["masks"]
    assert view["prompt"] == 0
    check_mask(view)
    assert result.usage.outputs == 1
    assert result.usage.compute_seconds > 0


async def test_multimask_output_gives_three_candidates_per_box_best_first(
    tiny_sam2_dir: Path,
) -> None:
    req = sam2_request(
        tiny_sam2_dir, boxes=[[2, 2, 20, 20], [10, 5, 39, 29]], multimask_output=True
    )
    result, _ = await segment(sam2(), req)
    masks = result.output["masks"]
    assert [m["prompt"] for m in masks] == [0, 0, 0, 1, 1, 1]
    for prompt in (0, 1):
        scores = [m["score"] for m in masks if m["prompt"] == prompt]
        assert scores == sorted(scores, reverse=True)
    for view in masks:
        check_mask(view)


async def test_no_prompt_segments_everything_with_progress(tiny_sam2_dir: Path) -> None:
    result, events = await segment(
        sam2(**OPEN_FILTERS, points_per_batch=5), sam2_request(tiny_sam2_dir)
    )
    assert result.output["mode"] == "automatic"
    masks = result.output["masks"]
    assert masks, "open filters keep every non-empty candidate"
    assert len(masks) <= 16 * 3
    for view in masks:
        assert check_mask(view).any()
        assert "stability_score" in view
    steps = events.progress("segmenting")
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    assert {s["total"] for s in steps} == {4}
    assert result.usage.outputs == len(masks)


async def test_max_masks_caps_the_automatic_masks(tiny_sam2_dir: Path) -> None:
    result, _ = await segment(sam2(**OPEN_FILTERS), sam2_request(tiny_sam2_dir, max_masks=1))
    assert len(result.output["masks"]) == 1


async def test_strict_filters_can_leave_no_masks(tiny_sam2_dir: Path) -> None:
    strict = {"pred_iou_thresh": 2.0, "points_per_side": 2}
    result, _ = await segment(sam2(**strict), sam2_request(tiny_sam2_dir))
    assert result.output["masks"] == []
    assert result.usage.outputs == 0


@pytest.mark.parametrize(
    "payload",
    [
        {"points": [[1, 1], [2, 2]], "point_labels": [1]},
        {"points": [[1, 1]], "boxes": [[0, 0, 5, 5], [1, 1, 6, 6]]},
        {"boxes": [[5, 5, 5, 9]]},
    ],
)
async def test_inconsistent_prompts_are_invalid_input(
    tiny_sam2_dir: Path, payload: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInput):
        await segment(sam2(), sam2_request(tiny_sam2_dir, **payload))


async def test_a_missing_image_is_invalid_input(tiny_sam2_dir: Path) -> None:
    req = request("segmentation", model=ModelRef("m", str(tiny_sam2_dir)))
    with pytest.raises(InvalidInput):
        await segment(sam2(), req)


@pytest.mark.gpu
async def test_points_and_automatic_masks_run_on_cuda(tiny_sam2_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    segmenter = sam2(**OPEN_FILTERS, device="cuda")
    model = ModelRef("sam2-tiny", str(tiny_sam2_dir))
    base = sam2_request(tiny_sam2_dir, points=[[20, 15]])
    prompted = EngineRequest("job-1", "segmentation", model, base.input, base.media)
    result, _ = await segment(segmenter, prompted)
    check_mask(result.output["masks"][0])
    auto = EngineRequest("job-2", "segmentation", model, {"image_url": "x"}, base.media)
    result, _ = await segment(sam2(**OPEN_FILTERS, device="cuda"), auto)
    assert result.output["mode"] == "automatic"
