"""A model's first load is visible in the job's status and stream, and happens once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
    ModelRef,
    Usage,
)
from gpubridge.engines.residency import Resident
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog

SLOW_TYPE = "test-slow-loading"
EMAIL = "loading@example.com"


class SlowLoadingEngine:
    """Loads its model through the shared cache, blocking until ``release`` is set."""

    def __init__(self, config: BackendConfig, context: EngineContext) -> None:
        self.name = config.name
        self.release = threading.Event()
        self.loads = 0
        self._models: Resident[str] = Resident(context.model_cache(), config.name)

    def _load(self) -> str:
        self.loads += 1
        self.release.wait(30)
        return "weights"

    async def load(self, model: ModelRef) -> None:
        await self._models.get(model.source, self._load)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        weights = await self._models.get(
            request.model.source, self._load, emit=emit, label=request.model.id
        )
        return EngineResult({"text": weights}, Usage(compute_seconds=0.1))

    async def health(self) -> bool:
        return True

    async def unload(self) -> None:
        self._models.clear()


@pytest.fixture
async def app_client(database: Any, database_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    def edit(data: dict[str, Any]) -> None:
        service = data["services"]["upscale-l4"]  # an async service
        service["backends"] = [{"name": "slow", "type": SLOW_TYPE, "concurrency": 4}]

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    engines: list[SlowLoadingEngine] = []

    def create(config: BackendConfig, context: EngineContext) -> SlowLoadingEngine:
        engines.append(SlowLoadingEngine(config, context))
        return engines[-1]

    async with running_app(settings_for(database_url, tmp_path, catalog)) as (app, client):
        app.state.components.registry.register(SLOW_TYPE, create)
        key = await register(client, EMAIL)
        await app.state.gateway.grant(EMAIL, 5_000_000)
        yield client, key, engines


async def status(client: Any, job_id: str) -> dict[str, Any]:
    return (await client.get(f"/status/{job_id}")).json()  # type: ignore[no-any-return]


async def test_loading_shows_in_the_status_and_two_jobs_share_one_load(app_client, tmp_path):
    client, key, engines = app_client
    image = {"image_url": "data:image/png;base64," + _png_b64()}
    jobs = []
    for _ in range(2):
        response = await client.post(
            "/run", json={"service": "upscale-l4", "input": image}, headers=auth(key)
        )
        assert response.status_code == 202, response.text
        jobs.append(response.json()["job_id"])
    async with asyncio.timeout(60):
        while (await status(client, jobs[0])).get("progress", {}).get("stage") != "loading_model":
            await asyncio.sleep(0.05)
        assert (await status(client, jobs[0]))["status"] == "running"
        engines[0].release.set()
        for job_id in jobs:
            while (await status(client, job_id))["status"] == "running":
                await asyncio.sleep(0.05)
    finished = [await status(client, job_id) for job_id in jobs]
    assert [job["status"] for job in finished] == ["completed", "completed"]
    assert [job["output"]["text"] for job in finished] == ["weights", "weights"]
    assert engines[0].loads == 1


def _png_b64() -> str:
    import base64

    from tests.support.media_server import png_bytes

    return base64.b64encode(png_bytes(8, 8)).decode()
