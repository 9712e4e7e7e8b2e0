"""Segmentation behind POST /run, on a tiny SAM 2 loaded from a directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpubridge.engines.mask_encoding import rle_area
from tests.support.media_server import MediaServer, png_bytes
from tests.support.service_runs import ServiceRuns, StartServices

pytestmark = [pytest.mark.slow]


@pytest.fixture
async def runs(services: StartServices, tiny_sam2_dir: Path) -> AsyncIterator[ServiceRuns]:
    def edit(data: dict[str, Any]) -> None:
        for model in data["services"]["segmentation"]["models"]:
            model["source"] = str(tiny_sam2_dir)
            model["options"] = {"device": "cpu", "pred_iou_thresh": -1.0}

    async with services(edit) as runs:
        yield runs


async def test_box_prompts_give_mask_files_rle_and_polygons(
    runs: ServiceRuns, media: MediaServer
) -> None:
    url = media.add("street.png", png_bytes(40, 30), "image/png")
    data = {"image_url": url, "boxes": [[4, 4, 30, 25]], "multimask_output": True}
    job = await runs.run("segmentation", data)
    assert job["backend"] == "local-sam2"
    output = job["output"]
    assert output["mode"] == "prompted"
    assert len(output["masks"]) == 3
    for view in output["masks"]:
        assert view["mask"]["content_type"].startswith("image/png")
        png = await runs.image(view["mask"])
        assert png.size == (40, 30)
        assert rle_area(view["rle"]) == view["area"] == int((np.asarray(png) > 127).sum())
        assert bool(view["polygons"]) == (view["area"] > 0)
    assert job["usage"]["compute_seconds"] > 0
    runs.assert_charged(job)


async def test_without_prompts_every_object_is_segmented(
    runs: ServiceRuns, media: MediaServer
) -> None:
    url = media.add("scene.png", png_bytes(32, 32), "image/png")
    job = await runs.run("segmentation", {"image_url": url, "points_per_side": 4})
    assert job["output"]["mode"] == "automatic"
    assert all(view["area"] > 0 for view in job["output"]["masks"])
