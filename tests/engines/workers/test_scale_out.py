"""The scaled-out shape on one machine: a gateway on PostgreSQL with an S3 object store and two
worker processes placed by service; every job goes to the worker placed for it, files land in
the bucket, and the ledger proves itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gpubridge.db import Database
from gpubridge.engines.workers.pool import WorkerPool
from gpubridge.settings import WorkerSpec
from tests.engines.diffusion.conftest import tiny_sdxl_dir
from tests.support.object_store import LocalS3
from tests.support.service_runs import ServiceRuns, service_runs

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

__all__ = ["tiny_sdxl_dir"]


@pytest.fixture
async def placed(
    postgres_url: str, s3: LocalS3, tmp_path: Path, tiny_sdxl_dir: Path, tiny_sentence_dir: Path
) -> AsyncIterator[tuple[ServiceRuns, str]]:
    db = Database(postgres_url)
    await db.drop_all()
    await db.create_all()
    await db.dispose()

    def edit(data: dict[str, Any]) -> None:
        image = data["services"]["image-4090"]
        model = next(m for m in image["models"] if m.get("default"))
        model["source"] = str(tiny_sdxl_dir)
        model["options"] = {"pipeline": "StableDiffusionXLPipeline", "num_inference_steps": 2}
        embed = data["services"]["embedding-l4"]
        model = next(m for m in embed["models"] if m.get("default"))
        model["source"] = str(tiny_sentence_dir)

    bucket = s3.new_bucket()
    workers = [
        WorkerSpec(name="text", services=["embedding-*", "llm-*"]),
        WorkerSpec(name="media", services=["image-*"]),
    ]
    async with service_runs(
        postgres_url, tmp_path, edit, worker_mode="process", workers=workers, **s3.settings(bucket)
    ) as runs:
        yield runs, bucket


def holders(runs: ServiceRuns, backend: str) -> list[str]:
    pool = runs.app.state.components.workers
    assert isinstance(pool, WorkerPool)
    return [w.name for w in pool.workers if any(owner == backend for owner, _ in w.models)]


async def test_jobs_run_on_the_worker_placed_for_their_service_and_files_go_to_the_bucket(
    placed: tuple[ServiceRuns, str], s3: LocalS3
) -> None:
    runs, bucket = placed
    embedded = await runs.run("embedding-l4", {"text": ["a fox", "a dog"]}, timeout_s=120)
    assert len(embedded["output"]["embeddings"]) == 2
    image = await runs.run(
        "image-4090", {"prompt": "a fox", "width": 256, "height": 256}, timeout_s=180
    )
    png = await runs.download(image["output"]["images"][0])
    assert png.startswith(b"\x89PNG")
    assert any(key.startswith("jobs/") for key in s3.keys(bucket))
    assert holders(runs, "local-sentence-transformers") == ["text"]
    assert holders(runs, "local-diffusers-image") == ["media"]
    report = await runs.app.state.gateway.check_ledger()
    assert report.ok, report.summary()
