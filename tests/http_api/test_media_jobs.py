"""Jobs with media: inputs fetched before the charge, outputs stored and served at /files/{id}
(from a local directory, or from an object store that replicas share)."""

from __future__ import annotations

import base64
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update

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
from tests.support.gateway_app import running_app, settings_for, write_catalog
from tests.support.local_chain import LocalChain
from tests.support.media_server import MediaServer, png_bytes, serve_media, wav_bytes
from tests.support.object_store import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from tests.support.service_runs import ServiceRuns, service_runs
from tests.support.x402_app import challenge, unb64, v2_header

ECHO_TYPE = "test-echo-media"
EMAIL = "media@example.com"
PNG = png_bytes(16, 16)


class EchoMediaEngine:
    """Answers with the image it was given (as a stored file) and a generated WAV, or a line of
    text for audio."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[EngineRequest] = []

    async def load(self, model: ModelRef) -> None:
        return None

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        self.seen.append(request)
        if "audio_url" in request.media:  # transcription: a line of text
            return EngineResult({"text": "echo", "language": "en"}, Usage(compute_seconds=0.5))
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


@pytest.fixture
async def x402_media(
    database: Any, database_url: str, tmp_path: Path, chain: LocalChain
) -> AsyncIterator[ServiceRuns]:
    """The echo engine behind caption and whisper-l4, with x402 paid on the local chain."""

    def edit(data: dict[str, Any]) -> None:
        for key in ("caption", "whisper-l4"):
            data["services"][key]["backends"] = [{"name": "echo", "type": ECHO_TYPE}]

    engine = EchoMediaEngine("echo")
    async with service_runs(database_url, tmp_path, edit, **chain.settings()) as runs:
        runs.app.state.components.registry.register(ECHO_TYPE, lambda config, context: engine)
        runs.app.state.gateway.x402.use_chain(chain.gateway_chain())
        yield runs


async def test_an_unpaid_request_is_priced_without_fetching_its_media_and_a_paid_one_fetches_once(
    x402_media, media, chain
):
    runs = x402_media
    image, audio = f"{uuid.uuid4().hex}.png", f"{uuid.uuid4().hex}.wav"
    media.add(image, PNG, "image/png")
    media.add(audio, wav_bytes(1.0), "audio/wav")
    caption = {"service": "caption", "input": {"image_url": media.url(image)}}
    whisper = {"service": "whisper-l4", "input": {"audio_url": media.url(audio)}}

    for _ in range(3):
        for body in (caption, whisper):
            response = await runs.client.post("/run", json=body)
            assert response.status_code == 402, response.text
    assert media.hits(image) == 0
    assert media.hits(audio) == 0
    # Audio priced per second is asked its ceiling without a measured length: the time limit.
    catalog = runs.app.state.gateway.catalog
    service = catalog.service("whisper-l4")
    ceiling = catalog.quote(service, service.default_model, whisper["input"]).ceiling_micros
    assert (
        int(
            unb64((await runs.client.post("/run", json=whisper)).headers["payment-required"])[
                "accepts"
            ][0]["amount"]
        )
        == ceiling
    )

    accepted = await challenge(runs.client, caption)
    payer = chain.new_payer(int(accepted["amount"]))
    paid = await runs.client.post("/run", json=caption, headers=v2_header(chain, payer, accepted))
    assert paid.status_code in (200, 202), paid.text
    assert media.hits(image) == 1


async def test_replicas_sharing_the_database_and_the_bucket_serve_each_others_files(
    database: Any, database_url: str, tmp_path: Path, media: MediaServer, s3: Any
):
    bucket = s3.new_bucket()
    store = s3.settings(bucket)
    (tmp_path / "a").mkdir()

    def edit(data: dict[str, Any]) -> None:
        data["services"]["caption"]["backends"] = [{"name": "echo", "type": ECHO_TYPE}]

    engine = EchoMediaEngine("echo")
    async with service_runs(database_url, tmp_path / "a", edit, **store) as first:
        first.app.state.components.registry.register(ECHO_TYPE, lambda config, context: engine)
        job = await first.run("caption", {"image_url": media.url("cat.png")}, http_status=200)
        assert engine.seen[0].media["image_url"].data == PNG
        image = job["output"]["image"]
        assert await first.download(image) == PNG

    # Another replica, with its own data directory, serves the file from the bucket alone.
    catalog = write_catalog(tmp_path / "catalog.yaml")
    settings = settings_for(database_url, tmp_path / "b", catalog, **store)
    async with running_app(settings) as (app, client):
        response = await client.get(f"/files/{image['file_id']}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert response.content == PNG
        assert (await app.state.gateway.files.job_inputs(job["job_id"]))["image_url"].data == PNG
        assert not (tmp_path / "a" / "data" / "files").exists()

        async with app.state.gateway.db.begin() as conn:
            await conn.execute(update(files).values(expires_at=utcnow() - timedelta(seconds=1)))
        await app.state.gateway.maintenance()
        assert s3.keys(bucket) == []


class ToneEngine:
    """Answers any text with a short WAV file."""

    async def load(self, model: ModelRef) -> None:
        return None

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        output = {"audio": OutputFile(wav_bytes(0.05), "audio/wav")}
        return EngineResult(output, Usage(audio_seconds=0.05, compute_seconds=0.1))

    async def health(self) -> bool:
        return True

    async def unload(self) -> None:
        return None


async def test_an_unreachable_object_store_is_a_503_and_no_charge(
    database: Any, database_url: str, tmp_path: Path, media: MediaServer
):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    store = {
        "object_store_url": "s3://files/jobs",
        "object_store_endpoint_url": f"http://127.0.0.1:{closed}",
        "object_store_access_key_id": ACCESS_KEY_ID,
        "object_store_secret_access_key": SECRET_ACCESS_KEY,
    }

    def edit(data: dict[str, Any]) -> None:
        data["services"]["caption"]["backends"] = [{"name": "echo", "type": ECHO_TYPE}]
        data["services"]["tts-l4"]["backends"] = [{"name": "tone", "type": "test-tone"}]

    async with service_runs(database_url, tmp_path, edit, **store) as runs:
        registry = runs.app.state.components.registry
        registry.register(ECHO_TYPE, lambda config, context: EchoMediaEngine("echo"))
        registry.register("test-tone", lambda config, context: ToneEngine())
        before = await balance(runs)

        # An input that cannot be stored: refused before any charge.
        response = await runs.submit("caption", {"image_url": media.url("cat.png")})
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "service_unavailable"
        assert "object store could not be reached" in error["message"]

        # An output that cannot be stored: the job fails and its hold comes back.
        job = await runs.run("tts-l4", {"text": "hello"}, expect="failed")
        assert job["error"]["code"] == "service_unavailable"
        assert "could not store the file" in job["error"]["message"]
        assert await balance(runs) == before

        # A file whose bytes the store cannot give back.
        async with runs.app.state.gateway.db.begin() as conn:
            await conn.execute(
                insert(files).values(
                    id="0123456789abcdef.png",
                    role="output",
                    content_type="image/png",
                    size_bytes=3,
                    created_at=utcnow(),
                    expires_at=utcnow() + timedelta(hours=1),
                )
            )
        response = await runs.client.get("/files/0123456789abcdef.png")
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "service_unavailable"


async def test_audio_paid_with_upto_is_charged_its_seconds_and_a_bad_url_uses_nothing(
    x402_media, media, chain
):
    from sqlalchemy import select

    from gpubridge.db.tables import x402_payments
    from tests.http_api.test_x402_upto import upto_header

    runs = x402_media
    audio = f"{uuid.uuid4().hex}.wav"
    media.add(audio, wav_bytes(1.0), "audio/wav")
    whisper = {"service": "whisper-l4", "input": {"audio_url": media.url(audio)}}
    asked = await runs.client.post("/run", json=whisper)
    upto = unb64(asked.headers["payment-required"])["accepts"][1]
    assert upto["scheme"] == "upto"
    payer = chain.new_payer(10_000_000, eth=True)
    chain.approve_permit2(payer)

    paid = await runs.client.post("/run", json=whisper, headers=upto_header(payer, upto))
    assert paid.status_code == 200, paid.text
    cost = round(paid.json()["cost_usd"] * 1_000_000)
    assert 0 < cost < int(upto["amount"])  # one second, not the whole time limit
    assert unb64(paid.headers["payment-response"])["amount"] == str(cost)
    assert chain.balance(payer.address) == 10_000_000 - cost

    missing = {"service": "whisper-l4", "input": {"audio_url": media.url("missing.wav")}}
    refused = await runs.client.post("/run", json=missing, headers=upto_header(payer, upto))
    assert refused.status_code == 422, refused.text
    assert "upto authorization was not used" in refused.json()["error"]["message"]
    assert chain.balance(payer.address) == 10_000_000 - cost
    async with runs.app.state.gateway.db.connect() as conn:
        statuses = (
            await conn.execute(
                select(x402_payments.c.status).where(x402_payments.c.payer == payer.address.lower())
            )
        ).scalars()
        assert sorted(statuses) == ["released", "settled"]
