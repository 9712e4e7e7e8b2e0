"""The guarded httpx client: requests go to vetted addresses, redirect hops included, and TLS
still checks the hostname."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from gpubridge.errors import InvalidInput
from gpubridge.jobs import netguard
from gpubridge.jobs.guarded_http import GuardedTransport, guarded_client


async def _serve(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    return runner


def _port(runner: web.AppRunner) -> int:
    return int(runner.addresses[0][1])


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """A loopback server; yields its base URL with the hostname ``localhost``."""

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"host": request.headers["Host"], "path": request.path})

    async def hops(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound("/echo" if n == 0 else f"/hops/{n - 1}")

    async def to(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["location"])

    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/hops/{n}", hops)
    app.router.add_get("/to", to)
    runner = await _serve(app)
    yield f"http://localhost:{_port(runner)}"
    await runner.cleanup()


async def test_requests_connect_to_the_vetted_address_and_keep_the_host_header(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def resolve(host: str, port: int) -> list[netguard.IPAddress]:
        assert host == "hooks.example"
        return [ipaddress.IPv4Address("127.0.0.1")]

    monkeypatch.setattr(netguard, "_resolve", resolve)
    port = httpx.URL(server).port
    async with (
        guarded_client(allow_private=True, require_https=True, timeout_s=5) as client,
        asyncio.timeout(5),
    ):
        response = await client.get(f"http://hooks.example:{port}/echo")
    assert response.json() == {"host": f"hooks.example:{port}", "path": "/echo"}
    assert response.request.url.host == "hooks.example"


async def test_the_client_refuses_addresses_its_rules_forbid(server: str) -> None:
    async with guarded_client(allow_private=False, require_https=False, timeout_s=5) as client:
        with pytest.raises(InvalidInput) as caught:
            await client.get(f"{server}/echo")
    assert caught.value.code == "unsafe_url"


async def test_redirects_are_not_followed_by_default(server: str) -> None:
    async with guarded_client(allow_private=True, require_https=True, timeout_s=5) as client:
        response = await client.get(f"{server}/hops/0")
    assert response.status_code == 302


async def test_redirects_are_followed_up_to_the_hop_limit(server: str) -> None:
    async with (
        guarded_client(
            allow_private=True, require_https=True, timeout_s=5, max_redirects=3
        ) as client,
        asyncio.timeout(5),
    ):
        response = await client.get(f"{server}/hops/2")
        assert response.json()["path"] == "/echo"
        with pytest.raises(httpx.TooManyRedirects):
            await client.get(f"{server}/hops/3")


@pytest.mark.parametrize(
    ("location", "code"),
    [
        ("http://10.0.0.1/", "unsafe_url"),
        ("http://user:pw@localhost/echo", "invalid_url"),
        ("file:///etc/passwd", "invalid_url"),
    ],
)
async def test_every_redirect_hop_is_vetted_again(server: str, location: str, code: str) -> None:
    async with guarded_client(
        allow_private=True, require_https=True, timeout_s=5, max_redirects=3
    ) as client:
        with pytest.raises(InvalidInput) as caught:
            async with asyncio.timeout(5):
                await client.get(f"{server}/to", params={"location": location})
    assert caught.value.code == code


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate valid for the name ``localhost`` only, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_verifies_the_hostname_while_connecting_to_the_pinned_ip(
    tls_cert: tuple[Path, Path],
) -> None:
    cert, key = tls_cert
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text=request.headers["Host"])

    app = web.Application()
    app.router.add_get("/", ok)
    runner = await _serve(app, server_ctx)
    try:
        port = _port(runner)
        transport = GuardedTransport(
            allow_private=True, require_https=True, verify=ssl.create_default_context(cafile=cert)
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(5):
            response = await client.get(f"https://localhost:{port}/")
            assert response.text == f"localhost:{port}"
            # The certificate names only "localhost", so the literal IP must fail verification.
            with pytest.raises(httpx.ConnectError):
                await client.get(f"https://127.0.0.1:{port}/")
    finally:
        await runner.cleanup()
