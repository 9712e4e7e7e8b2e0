"""The six image-generation services behind POST /run, on tiny pipelines loaded from directories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.engines.diffusion.conftest import IP_ADAPTER_OPTIONS, picture
from tests.support.media_server import MediaServer, png_bytes
from tests.support.service_runs import ServiceRuns, StartServices

pytestmark = [pytest.mark.slow]

STEPS = {"num_inference_steps": 2}


def _point(service: dict[str, Any], model_id: str, source: Path, **options: Any) -> None:
    """Serve ``model_id`` of ``service`` from ``source`` with ``options`` (hub-only settings
    such as fp16 weight variants dropped)."""
    for model in service["models"]:
        if model["id"] == model_id:
            model["source"] = str(source)
            model["options"] = {**STEPS, **options}
            return
    raise AssertionError(f"no model {model_id}")


@pytest.fixture
async def runs(
    services: StartServices,
    tiny_sdxl_dir: Path,
    tiny_flux_fill_dir: Path,
    tiny_controlnet_dir: Path,
    tiny_depth_controlnet_dir: Path,
    tiny_depth_estimator_dir: Path,
    tiny_variation_dir: Path,
    tiny_ip_adapter_dir: Path,
) -> AsyncIterator[ServiceRuns]:
    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        base = str(tiny_sdxl_dir)
        _point(
            services["image-4090"],
            "playground-v2.5",
            tiny_sdxl_dir,
            pipeline="StableDiffusionXLPipeline",
        )
        _point(
            services["img2img"],
            "sdxl-refiner",
            tiny_sdxl_dir,
            pipeline="StableDiffusionXLImg2ImgPipeline",
        )
        _point(
            services["inpaint"], "flux-fill-dev", tiny_flux_fill_dir, pipeline="FluxFillPipeline"
        )
        _point(
            services["controlnet"],
            "controlnet-sdxl",
            tiny_controlnet_dir,
            base_model=base,
            controlnets={"depth": str(tiny_depth_controlnet_dir)},
            annotators={"depth": str(tiny_depth_estimator_dir)},
        )
        _point(services["image-variation"], "sd-image-variations", tiny_variation_dir)
        _point(
            services["photomaker"],
            "ip-adapter-plus-face",
            tiny_ip_adapter_dir,
            base_model=base,
            **IP_ADAPTER_OPTIONS,
        )

    async with services(edit) as runs:
        yield runs


async def generated(runs: ServiceRuns, service: str, data: dict[str, Any]) -> dict[str, Any]:
    """Run a job to completion, check its charge, and return it."""
    job = await runs.run(service, data, timeout_s=120)
    runs.assert_charged(job)
    return job


async def downloaded_sizes(runs: ServiceRuns, job: dict[str, Any]) -> list[tuple[int, int]]:
    return [(await runs.image(file)).size for file in job["output"]["images"]]


async def test_text_to_image_bills_each_output(runs: ServiceRuns) -> None:
    data = {"prompt": "a fox", "model": "playground-v2.5", "num_outputs": 2, "seed": 1}
    job = await generated(runs, "image-4090", data)
    assert await downloaded_sizes(runs, job) == [(32, 32), (32, 32)]
    assert job["output"]["seed"] == 1
    assert job["cost_usd"] == pytest.approx(0.02)  # two outputs at $0.01


async def test_img2img_redraws_the_fetched_image(runs: ServiceRuns, media: MediaServer) -> None:
    url = media.add("start.png", png_bytes(48, 32), "image/png")
    data = {"image_url": url, "prompt": "oil", "strength": 0.9}
    job = await generated(runs, "img2img", data)
    assert await downloaded_sizes(runs, job) == [(48, 32)]


async def test_inpaint_repaints_the_masked_area(runs: ServiceRuns, media: MediaServer) -> None:
    image = media.add("photo.png", picture(32, 32), "image/png")
    mask = media.add("mask.png", picture(32, 32, mask=True), "image/png")
    data = {"image_url": image, "mask_url": mask, "prompt": "x"}
    job = await generated(runs, "inpaint", data)
    assert await downloaded_sizes(runs, job) == [(32, 32)]


async def test_controlnet_follows_the_depth_of_the_reference(
    runs: ServiceRuns, media: MediaServer
) -> None:
    url = media.add("ref.png", picture(32, 32), "image/png")
    data = {"image_url": url, "prompt": "a house", "control_type": "depth"}
    job = await generated(runs, "controlnet", data)
    assert await downloaded_sizes(runs, job) == [(32, 32)]
    assert job["output"]["control_type"] == "depth"


async def test_image_variation_needs_only_an_image(runs: ServiceRuns, media: MediaServer) -> None:
    url = media.add("source.png", picture(32, 32), "image/png")
    job = await generated(runs, "image-variation", {"image_url": url, "num_outputs": 2})
    assert await downloaded_sizes(runs, job) == [(32, 32), (32, 32)]


async def test_portrait_takes_the_face_photo(runs: ServiceRuns, media: MediaServer) -> None:
    url = media.add("face.png", picture(40, 40), "image/png")
    data = {"image_url": url, "prompt": "an astronaut", "style_strength": 0.3}
    job = await generated(runs, "photomaker", data)
    assert await downloaded_sizes(runs, job) == [(32, 32)]
