"""Jobs with media: inputs fetched before the charge, outputs stored and served at /files/{id}."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import files
from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
    ModelRef,
    OutputFile,
    Usage,
)
from tests.support.media_server import MediaServer, png_bytes, serve_media, wav_bytes
from tests.support.service_runs import ServiceRuns, service_runs

ECHO_TYPE = "test-echo-media"
EMAIL = "media@example.com"
PNG = png_bytes(16, 16)


class EchoMediaEngine:
    """Answers with the image it was given (as a stored file) and a generated WAV."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[EngineRequest] = []

    async def load(self, model: ModelRef) -> None:
        return None

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        self.seen.append(request)
        image = request.media["image_url"]
        output = {
            "image": OutputFile(image.data, image.content_type, {"width": 16}),
            "clips": [OutputFile(wav_bytes(0.05), "audio/wav"), OutputFile(b"x" * 10, "audio/wav")],
            "caption": "echo",
        }
        return EngineResult(output, Usage(compute_seconds=0.5))

    async def health(self) -> bool:
        return True

    async def unload(self) -> None:
        return None


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    with serve_media() as server:
        server.add("cat.png", PNG, "image/png")
        server.add("page.html", b"<html></html>", "text/html")
        yield server


@pytest.fixture
async def app_client(
    database: Any, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[ServiceRuns, EchoMediaEngine]]:
    def edit(data: dict[str, Any]) -> None:
        data["services"]["caption"]["backends"] = [{"name": "echo", "type": ECHO_TYPE}]

    engine = EchoMediaEngine("echo")

    def create(config: BackendConfig, context: EngineContext) -> EchoMediaEngine:
        return engine

    async with service_runs(
        database_url, tmp_path, edit, email=EMAIL, credit=5_000_000, inline_output_bytes=64
    ) as runs:
        runs.app.state.components.registry.register(ECHO_TYPE, create)
        yield runs, engine


async def balance(runs: ServiceRuns) -> float:
    response = await runs.client.get("/account/balance", headers=runs.headers)
    return float(response.json()["balance"])


async def test_the_engine_gets_the_fetched_image_and_its_files_are_served(app_client, media):
    runs, engine = app_client
    job = await runs.run("caption", {"image_url": media.url("cat.png")}, http_status=200)
    assert engine.seen[0].media["image_url"].data == PNG
    image = job["output"]["image"]
    assert image["content_type"] == "image/png"
    assert image["size_bytes"] == len(PNG)
    assert image["width"] == 16
    assert "base64" not in image  # larger than the inline limit set here
    assert image["url"].endswith(f"/files/{image['file_id']}")
    assert image["file_id"].endswith(".png")
    assert await runs.download(image) == PNG
    small = job["output"]["clips"][1]
    assert base64.b64decode(small["base64"]) == b"x" * 10
    assert job["output"]["caption"] == "echo"
    assert job["cost_usd"] > 0
    status = (await runs.client.get(f"/status/{job['job_id']}")).json()
    assert status["output"]["image"]["file_id"] == image["file_id"]


async def test_a_bad_media_url_is_a_422_before_any_charge(app_client, media):
    runs, engine = app_client
    before = await balance(runs)
    for url, code in [
        (media.url("page.html"), "unsupported_media"),
        (media.url("missing.png"), "media_unreachable"),
        ("ftp://example.com/cat.png", "invalid_url"),
    ]:
        response = await runs.submit("caption", {"image_url": url})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == code
    assert await balance(runs) == before
    assert engine.seen == []
    jobs = (await runs.client.get("/account/jobs", headers=runs.headers)).json()
    assert jobs["total"] == 0


async def test_files_expire_with_the_results_and_are_purged(app_client, media):
    runs, _ = app_client
    job = await runs.run("caption", {"image_url": media.url("cat.png")})
    file_id = job["output"]["image"]["file_id"]
    client, gateway = runs.client, runs.app.state.gateway
    async with gateway.db.begin() as conn:
        await conn.execute(update(files).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = await client.get(f"/files/{file_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "expired"
    await gateway.maintenance()
    response = await client.get(f"/files/{file_id}")
    assert response.json()["error"]["code"] == "file_not_found"
    assert list(gateway.files.blobs.directory.iterdir()) == []


async def test_an_unknown_file_is_a_404(app_client):
    runs, _ = app_client
    response = await runs.client.get("/files/0123456789abcdef.png")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "file_not_found"
