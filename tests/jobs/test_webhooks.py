from __future__ import annotations

import asyncio
import base64
import itertools
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from gpubridge.jobs.webhooks import Attempt, WebhookSender
from gpubridge.payments.accounts import new_webhook_secret
from gpubridge.settings import Settings

SECRET = new_webhook_secret()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A loopback webhook receiver that fails its first ``fail_first`` requests."""

    url: str = ""
    fail_first: int = 0
    fail_status: int = 500
    hang: bool = False
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Received(request.path, dict(request.headers), body, time.monotonic()))
        if self.hang:
            await self.release.wait()
        if len(self.requests) <= self.fail_first:
            if 300 <= self.fail_status < 400:
                return web.Response(status=self.fail_status, headers={"Location": "/elsewhere"})
            return web.Response(status=self.fail_status)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    recv.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield recv
    recv.release.set()
    await runner.cleanup()


@pytest.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    s = WebhookSender(allow_private=True, timeout_s=2, retries=3, backoff_s=0.01)
    yield s
    await s.aclose()


class Recorder:
    def __init__(self) -> None:
        self.attempts: list[Attempt] = []

    async def __call__(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)


async def _deliver(sender: WebhookSender, url: str, recorder: Recorder) -> bool:
    async with asyncio.timeout(10):
        return await sender.deliver(
            url,
            SECRET,
            "job.completed",
            {"job_id": "job_1", "status": "completed"},
            record=recorder,
        )


def test_new_secrets_are_whsec_base64_and_distinct() -> None:
    a, b = new_webhook_secret(), new_webhook_secret()
    assert a != b and a.startswith("whsec_")
    assert len(base64.b64decode(a.removeprefix("whsec_"))) == 32


async def test_sender_is_built_from_settings(receiver: Receiver) -> None:
    receiver.fail_first = 100
    settings = Settings(allow_private_urls=True, webhook_retries=1, webhook_backoff_s=0.01)
    sender = WebhookSender.from_settings(settings)
    recorder = Recorder()
    try:
        assert not await _deliver(sender, receiver.url, recorder)
    finally:
        await sender.aclose()
    assert [a.status_code for a in recorder.attempts] == [500, 500]


async def test_delivery_is_signed_per_standard_webhooks(
    sender: WebhookSender, receiver: Receiver
) -> None:
    recorder = Recorder()
    assert await _deliver(sender, receiver.url, recorder)

    [request] = receiver.requests
    event = Webhook(SECRET).verify(request.body, request.headers)
    assert event["type"] == "job.completed"
    assert event["data"] == {"job_id": "job_1", "status": "completed"}
    assert event["timestamp"].endswith("Z")
    assert request.headers["Content-Type"] == "application/json"
    [attempt] = recorder.attempts
    assert attempt.webhook_id == request.headers["webhook-id"]
    assert (attempt.number, attempt.status_code, attempt.error) == (1, 204, None)
    assert attempt.delivered and attempt.duration_s >= 0


async def test_failed_attempts_are_retried_with_the_same_id_until_success(
    sender: WebhookSender, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    recorder = Recorder()
    assert await _deliver(sender, receiver.url, recorder)

    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1
    for request in receiver.requests:
        Webhook(SECRET).verify(request.body, request.headers)
    assert [(a.number, a.status_code) for a in recorder.attempts] == [(1, 500), (2, 500), (3, 204)]


async def test_delivery_gives_up_after_one_attempt_plus_three_retries(
    sender: WebhookSender, receiver: Receiver
) -> None:
    receiver.fail_first = 100
    recorder = Recorder()
    assert not await _deliver(sender, receiver.url, recorder)
    assert len(receiver.requests) == 4
    assert [a.number for a in recorder.attempts] == [1, 2, 3, 4]
    assert not any(a.delivered for a in recorder.attempts)


async def test_backoff_doubles_between_attempts(receiver: Receiver) -> None:
    receiver.fail_first = 100
    sender = WebhookSender(allow_private=True, timeout_s=2, retries=3, backoff_s=0.05)
    try:
        await _deliver(sender, receiver.url, Recorder())
    finally:
        await sender.aclose()
    times = [r.at for r in receiver.requests]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 3
    assert all(gap >= want for gap, want in zip(gaps, [0.05, 0.1, 0.2], strict=True)), gaps


async def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    sender: WebhookSender, receiver: Receiver
) -> None:
    receiver.fail_first, receiver.fail_status = 100, 302
    recorder = Recorder()
    assert not await _deliver(sender, receiver.url, recorder)
    assert {r.path for r in receiver.requests} == {"/hook"}
    assert [a.status_code for a in recorder.attempts] == [302] * 4


async def test_connection_errors_are_recorded_and_retried(sender: WebhookSender) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    recorder = Recorder()
    assert not await _deliver(sender, f"http://127.0.0.1:{closed_port}/hook", recorder)
    assert len(recorder.attempts) == 4
    assert all(a.status_code is None and a.error for a in recorder.attempts)


async def test_each_attempt_is_bounded_by_the_timeout(receiver: Receiver) -> None:
    receiver.hang = True
    sender = WebhookSender(allow_private=True, timeout_s=0.2, retries=0, backoff_s=0.01)
    recorder = Recorder()
    try:
        assert not await _deliver(sender, receiver.url, recorder)
    finally:
        await sender.aclose()
    [attempt] = recorder.attempts
    assert attempt.status_code is None and attempt.error
    assert "timeout" in attempt.error.lower()


async def _trickle_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer any request with a status line and headers that never end, a byte at a time."""
    await reader.read(65536)
    try:
        for byte in itertools.chain(b"HTTP/1.1 200 OK\r\n", itertools.cycle(b"X-Pad: a\r\n")):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def test_a_receiver_trickling_its_answer_is_cut_off_at_one_deadline_per_attempt() -> None:
    server = await asyncio.start_server(_trickle_headers, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # A byte every 0.05 s never trips the 0.5 s wait for each read: only the attempt's own
    # deadline ends it.
    sender = WebhookSender(allow_private=True, timeout_s=0.5, retries=0, backoff_s=0.01)
    recorder = Recorder()
    try:
        async with asyncio.timeout(10):
            assert not await _deliver(sender, f"http://127.0.0.1:{port}/hook", recorder)
    finally:
        await sender.aclose()
        server.close()
    [attempt] = recorder.attempts
    assert attempt.status_code is None and attempt.error == "timeout"
    assert attempt.duration_s < 2


async def test_loopback_is_refused_without_allow_private(receiver: Receiver) -> None:
    sender = WebhookSender(allow_private=False, timeout_s=2, retries=3, backoff_s=0.01)
    recorder = Recorder()
    try:
        assert not await _deliver(sender, receiver.url, recorder)
    finally:
        await sender.aclose()
    assert receiver.requests == []
    [attempt] = recorder.attempts
    assert attempt.error is not None and attempt.error.startswith("unsafe_url")


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://93.184.215.14/hook", "unsafe_url"),
        ("https://localhost/hook", "unsafe_url"),
        ("https://[::ffff:127.0.0.1]/hook", "unsafe_url"),
        ("http://[::ffff:127.0.0.1]/hook", "unsafe_url"),
        ("https://169.254.169.254/latest/meta-data/", "unsafe_url"),
        ("https://10.0.0.1/hook", "unsafe_url"),
        ("https://0.0.0.0/hook", "unsafe_url"),
        ("file:///etc/passwd", "invalid_url"),
        ("https://user:pw@example.com/hook", "invalid_url"),
        ("https://[::1/hook", "invalid_url"),
    ],
)
async def test_unsafe_or_invalid_urls_end_delivery_without_retries(url: str, code: str) -> None:
    sender = WebhookSender(allow_private=False, timeout_s=2, retries=3, backoff_s=0.01)
    recorder = Recorder()
    try:
        assert not await _deliver(sender, url, recorder)
    finally:
        await sender.aclose()
    [attempt] = recorder.attempts
    assert attempt.error is not None and attempt.error.startswith(code)


async def test_plain_http_is_refused_for_private_non_loopback_hosts_even_in_development(
    sender: WebhookSender,
) -> None:
    recorder = Recorder()
    assert not await _deliver(sender, "http://10.0.0.1/hook", recorder)
    [attempt] = recorder.attempts
    assert attempt.error is not None and "https" in attempt.error
