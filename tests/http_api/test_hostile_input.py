"""Hostile requests against a real ``gpubridge serve`` process: none crashes it, stalls it,
swells its memory past the caps or costs the caller anything.

One server for the module, with x402 on (so the Ethereum libraries are imported at start-up,
as in production), short body and media deadlines, and loopback media allowed. After every
case ``/healthz`` must answer and the server's resident memory must stay within
``MEMORY_GROWTH_CAP`` of what it used before the case.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.hf_cache import cache_model
from tests.support.media_server import png_bytes, serve_media
from tests.test_cli import SHUTDOWN_TIMEOUT_S, cli_env, command, free_port, gpubridge

pytestmark = [pytest.mark.slow]

EMAIL = "hostile@example.com"
CREDIT_USD = "5"
BODY_DEADLINE_S = 2
MEDIA_DEADLINE_S = 2
MEMORY_GROWTH_CAP = 64 * 1024 * 1024
READY_TIMEOUT_S = 60
# What only an unreachable RPC node makes of the chain: nothing is paid here.
PAY_TO = "0x" + "ab" * 20


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    key: str

    def rss(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def balance(self) -> float:
        with self.client() as client:
            response = client.get("/account/balance", headers=self.auth())
        value: float = response.json()["balance"]
        return value

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("hostile")
    port = free_port()
    # caption's model counts as downloaded (the media tests never get as far as running it).
    hub = data / "hub"
    cache_model(hub, "Salesforce/blip-image-captioning-large", {"config.json": b"{}"})
    env = cli_env(
        data,
        HF_HUB_CACHE=str(hub),
        GPUBRIDGE_REQUEST_BODY_TIMEOUT_S=str(BODY_DEADLINE_S),
        GPUBRIDGE_MEDIA_TIMEOUT_S=str(MEDIA_DEADLINE_S),
        GPUBRIDGE_ALLOW_PRIVATE_URLS="true",
        GPUBRIDGE_X402_PAY_TO=PAY_TO,
        GPUBRIDGE_X402_RPC_URL="http://127.0.0.1:9",
        GPUBRIDGE_RATE_LIMIT_PER_IP_PER_SECOND="40",
        GPUBRIDGE_RATE_LIMIT_PER_KEY_PER_MINUTE="0",
    )
    log = data / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command(), "serve", "--port", str(port)],
            cwd=data,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        registered = httpx.post(f"{url}/account/register", json={"email": EMAIL}, timeout=30)
        assert registered.status_code == 201, registered.text
        granted = gpubridge(data, "credits", "grant", EMAIL, CREDIT_USD)
        assert granted.returncode == 0, granted.stderr
        yield Server(url, port, process, log, registered.json()["api_key"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=SHUTDOWN_TIMEOUT_S)


@pytest.fixture(autouse=True)
def still_standing(server: Server) -> Iterator[None]:
    """After each case: the server answers, spent nothing, and holds no more memory."""
    time.sleep(1.1)  # a fresh per-IP rate-limit window
    before_rss, before_balance = server.rss(), server.balance()
    yield
    assert server.process.poll() is None, server.log.read_text()[-4000:]
    time.sleep(1.1)  # past a case that used up the per-IP limit
    with server.client() as client:
        assert client.get("/healthz").status_code == 200
    assert server.balance() == before_balance
    grown = server.rss() - before_rss
    assert grown < MEMORY_GROWTH_CAP, f"resident memory grew by {grown / 2**20:.0f} MiB"


def error_code(response: httpx.Response) -> str:
    body = response.json()
    code: str = body["error"]["code"]
    return code


def nested(depth: int) -> bytes:
    return b'{"email": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("path", ["/account/register", "/run", "/v1/chat/completions"])
def test_a_body_nested_a_hundred_thousand_deep_is_a_400(server: Server, path: str) -> None:
    with server.client() as client:
        response = client.post(
            path,
            content=nested(100_000),
            headers={**server.auth(), "Content-Type": "application/json"},
        )
    assert response.status_code == 400, response.text
    assert error_code(response) == "invalid_json"


def test_an_integer_of_five_thousand_digits_is_a_4xx(server: Server) -> None:
    huge = "9" * 5000
    body = f'{{"service": "llm-4090", "input": {{"prompt": "hi", "max_tokens": {huge}}}}}'
    with server.client() as client:
        run = client.post(
            "/run", content=body, headers={**server.auth(), "Content-Type": "application/json"}
        )
        estimate = client.get(
            "/catalog/estimate",
            params={"service": "llm-4090", "input": f'{{"max_tokens": {huge}}}'},
        )
    for response in (run, estimate):
        assert 400 <= response.status_code < 500, response.text
        assert error_code(response) == "invalid_json"


@pytest.mark.parametrize("limit", ["1e999999999", "-1e999999999", "NaN", 1e308])
def test_an_absurd_daily_limit_is_a_4xx(server: Server, limit: object) -> None:
    with server.client() as client:
        response = client.post(
            "/account/spending-limit", json={"daily_limit": limit}, headers=server.auth()
        )
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize(
    "email", ["a\\ud800b@example.com", "a\\u0000b@example.com", "a\\u202eb@example.com"]
)
def test_an_email_with_a_surrogate_nul_or_bidi_character_is_a_4xx(
    server: Server, email: str
) -> None:
    with server.client() as client:
        response = client.post(
            "/account/register",
            content=f'{{"email": "{email}"}}',
            headers={"Content-Type": "application/json"},
        )
    assert 400 <= response.status_code < 500, response.text


def test_a_fractional_max_tokens_is_refused_before_any_hold(server: Server) -> None:
    body = {"service": "llm-4090", "input": {"prompt": "hi", "max_tokens": 8000.0}}
    with server.client() as client:
        response = client.post("/run", json=body, headers=server.auth())
    assert response.status_code == 422, response.text


def test_four_concurrent_hundred_megabyte_bodies_are_refused_as_they_arrive(
    server: Server,
) -> None:
    chunk = b" " * (1 << 20)

    def upload() -> int:
        def body() -> Iterator[bytes]:
            for _ in range(100):
                yield chunk

        with server.client() as client:
            try:
                response = client.post(
                    "/run", content=body(), headers={"Content-Type": "application/json"}
                )
            except httpx.TransportError:
                return 413  # the server answered and closed while the body was still going
            return response.status_code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: upload(), range(4)))
    assert statuses == [413] * 4


def test_a_declared_length_over_the_cap_is_refused_before_reading(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n{"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_body_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline(server: Server) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /account/register HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        sock.settimeout(0.5)
        answer = b""
        while not answer and time.monotonic() - started < 20:
            try:
                sock.sendall(b" ")
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < BODY_DEADLINE_S + 5


def test_a_media_url_that_trickles_is_cut_off_at_the_deadline(server: Server) -> None:
    with serve_media() as media:
        media.trickle_s = 0.5
        media.add("slow.png", png_bytes(8, 8), "image/png")
        started = time.monotonic()
        body = {"service": "caption", "input": {"image_url": f"{media.base_url}/trickle/slow.png"}}
        with server.client() as client:
            response = client.post("/run", json=body, headers=server.auth())
    assert response.status_code == 422, response.text
    assert error_code(response) == "media_unreachable"
    assert time.monotonic() - started < MEDIA_DEADLINE_S + 5


@pytest.mark.parametrize("url", ["http://0177.0.0.1/x.png", "http://[::1/x.png", "http://a b/"])
def test_a_media_url_httpx_cannot_parse_is_a_422(server: Server, url: str) -> None:
    body = {"service": "caption", "input": {"image_url": url}}
    with server.client() as client:
        response = client.post("/run", json=body, headers=server.auth())
    assert response.status_code == 422, response.text


def test_spoofed_forwarding_headers_do_not_escape_the_per_ip_limit(server: Server) -> None:
    with server.client() as client:
        statuses = [
            client.get("/catalog", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
            for n in range(80)
        ]
    assert 429 in statuses


def test_json_error_bodies_stay_json(server: Server) -> None:
    with server.client() as client:
        response = client.post(
            "/run", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    json.loads(response.text)
