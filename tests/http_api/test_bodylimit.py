"""Request bodies: refused at their route's cap as the bytes arrive, and within one deadline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import Message

from gpubridge.errors import RequestTimeout
from gpubridge.http_api.bodylimit import (
    MAX_BODY_BYTES,
    MEDIA_FORM_OVERHEAD_BYTES,
    _LimitedBody,
    body_caps,
)
from tests.support.gateway_app import running_app, settings_for, write_catalog

CHUNK = 64 * 1024
WAIT_S = 10


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The cap is the same whatever the database: SQLite is enough here."""
    return f"sqlite+aiosqlite:///{tmp_path / 'gpubridge.db'}"


@pytest.fixture
async def client(database, database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(database_url, tmp_path) as client:
        yield client


@asynccontextmanager
async def _client(
    database_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    catalog = write_catalog(tmp_path / "catalog.yaml")
    async with running_app(settings_for(database_url, tmp_path, catalog, **overrides)) as (_, c):
        yield c


class Upload:
    """A streamed request body of ``total`` bytes that counts what the server pulled."""

    def __init__(self, total: int, *, head: bytes = b"") -> None:
        self.total = total
        self.head = head
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.head:
            self.pulled += len(self.head)
            yield self.head
        while self.pulled < self.total:
            chunk = b"x" * min(CHUNK, self.total - self.pulled)
            self.pulled += len(chunk)
            yield chunk


async def test_a_json_body_over_4_mib_is_refused_413_before_much_more_has_been_read(client):
    upload = Upload(64 * 1024 * 1024, head=b'{"email": "')
    with anyio.fail_after(WAIT_S):
        response = await client.post(
            "/account/register", content=upload, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.json()["error"]["message"] == "request body is larger than 4 MiB"
    assert upload.pulled <= MAX_BODY_BYTES + 2 * CHUNK
    assert response.headers["connection"] == "close"


async def test_a_declared_length_over_the_cap_is_refused_before_any_of_the_body_is_read(client):
    upload = Upload(MAX_BODY_BYTES + 1)
    with anyio.fail_after(WAIT_S):
        response = await client.post(
            "/account/register",
            content=upload,
            headers={"content-type": "application/json", "content-length": str(100 * 10**6)},
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert upload.pulled == 0


async def test_an_openai_route_refuses_an_oversized_body_in_openai_s_error_shape(client):
    upload = Upload(MAX_BODY_BYTES + CHUNK, head=b'{"model": "')
    with anyio.fail_after(WAIT_S):
        response = await client.post(
            "/v1/chat/completions", content=upload, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["type"] == "invalid_request_error"
    assert "message" in error and "param" in error


async def test_the_stripe_webhook_and_the_dashboard_forms_keep_their_smaller_caps(client):
    webhook = Upload(1024 * 1024 + CHUNK)
    form = Upload(64 * 1024, head=b"csrf_token=")
    with anyio.fail_after(WAIT_S):
        refused_webhook = await client.post("/webhooks/stripe", content=webhook)
        refused_form = await client.post(
            "/account/dashboard/sign-in",
            content=form,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert refused_webhook.status_code == 413
    assert webhook.pulled <= 1024 * 1024 + CHUNK
    assert refused_form.status_code == 413
    assert refused_form.json()["error"]["code"] == "payload_too_large"


def _multipart(size: int) -> tuple[Upload, dict[str, str]]:
    boundary = "gpubridge-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return Upload(size, head=head), {"content-type": f"multipart/form-data; boundary={boundary}"}


async def test_audio_uploads_may_pass_4_mib_up_to_the_media_cap_and_no_further(
    database, database_url: str, tmp_path: Path
):
    media_max = 6 * 1024 * 1024
    async with _client(database_url, tmp_path, media_max_bytes=media_max) as client:
        within, headers = _multipart(5 * 1024 * 1024)
        with anyio.fail_after(WAIT_S):
            accepted = await client.post(
                "/v1/audio/transcriptions", content=within, headers=headers
            )
        assert accepted.status_code != 413
        assert within.pulled == within.total

        beyond, headers = _multipart(20 * 1024 * 1024)
        with anyio.fail_after(WAIT_S):
            refused = await client.post("/v1/audio/transcriptions", content=beyond, headers=headers)
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "payload_too_large"
    assert beyond.pulled <= media_max + MEDIA_FORM_OVERHEAD_BYTES + 2 * CHUNK


def test_media_uploads_are_capped_at_the_media_size_and_everything_else_at_4_mib(tmp_path: Path):
    settings = settings_for("sqlite+aiosqlite://", tmp_path, tmp_path / "c.yaml")
    caps = body_caps(settings)
    assert caps.for_path("/v1/audio/transcriptions") == (
        settings.media_max_bytes + MEDIA_FORM_OVERHEAD_BYTES
    )
    assert caps.for_path("/account/dashboard/playground/whisper-l4") == (
        settings.media_max_bytes + MEDIA_FORM_OVERHEAD_BYTES
    )
    assert caps.for_path("/account/dashboard/daily-limit") == 16 * 1024
    assert caps.for_path("/v1/chat/completions") == MAX_BODY_BYTES
    assert caps.for_path("/run") == MAX_BODY_BYTES
    assert caps.for_path("/mcp") == MAX_BODY_BYTES


class Trickle:
    """A body that sends one byte every ``every_s`` and never ends."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{"
        while True:
            await anyio.sleep(self.every_s)
            yield b" "


async def test_a_body_trickled_past_the_deadline_is_refused_408(
    database, database_url: str, tmp_path: Path
):
    async with _client(database_url, tmp_path, request_body_timeout_s=0.5) as client:
        with anyio.fail_after(WAIT_S):
            response = await client.post(
                "/account/register",
                content=Trickle(0.05),
                headers={"content-type": "application/json"},
            )
            openai = await client.post(
                "/v1/embeddings",
                content=Trickle(0.05),
                headers={"content-type": "application/json"},
            )
    assert response.status_code == 408
    assert response.json()["error"]["code"] == "request_timeout"
    assert openai.status_code == 408
    assert openai.json()["error"]["code"] == "request_timeout"
    assert openai.json()["error"]["type"] == "invalid_request_error"


async def test_once_the_body_is_complete_receive_waits_on_the_client_without_a_deadline():
    messages: list[Message] = [
        {"type": "http.request", "body": b"{}", "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        if len(messages) == 1:
            await anyio.sleep(0.3)  # a streaming response waiting for the client to leave
        return messages.pop(0)

    body = _LimitedBody(receive, cap=1024, timeout_s=0.1)
    with anyio.fail_after(WAIT_S):
        assert (await body())["body"] == b"{}"
        assert (await body())["type"] == "http.disconnect"


async def test_a_body_still_arriving_at_the_deadline_raises_request_timeout():
    async def receive() -> Message:
        await anyio.sleep(1)
        return {"type": "http.request", "body": b"x", "more_body": True}

    body = _LimitedBody(receive, cap=1024, timeout_s=0.1)
    with anyio.fail_after(WAIT_S), pytest.raises(RequestTimeout):
        await body()
