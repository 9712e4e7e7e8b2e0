"""OCR behind POST /run, on a tiny Florence-2 loaded from a directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.media_server import MediaServer, png_bytes
from tests.support.service_runs import ServiceRuns, StartServices

pytestmark = [pytest.mark.slow]


@pytest.fixture
async def runs(services: StartServices, tiny_florence_dir: Path) -> AsyncIterator[ServiceRuns]:
    def edit(data: dict[str, Any]) -> None:
        for model in data["services"]["ocr"]["models"]:
            model["source"] = str(tiny_florence_dir)
            model["options"] = {"max_new_tokens": 16, "num_beams": 1, "device": "cpu"}

    async with services(edit) as runs:
        yield runs


async def test_ocr_with_region_reads_an_image_url_and_charges_compute_time(
    runs: ServiceRuns, media: MediaServer
) -> None:
    url = media.add("receipt.png", png_bytes(48, 32), "image/png")
    job = await runs.run("ocr", {"image_url": url, "task": "ocr_with_region"})
    assert job["backend"] == "local-florence"
    output = job["output"]
    assert output["task"] == "ocr_with_region"
    assert isinstance(output["text"], str)
    assert isinstance(output["regions"], list)
    assert (output["width"], output["height"]) == (48, 32)
    assert job["usage"]["compute_seconds"] > 0
    assert job["usage"]["completion_tokens"] > 0
    runs.assert_charged(job)
