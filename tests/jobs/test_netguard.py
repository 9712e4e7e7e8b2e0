from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gpubridge.errors import InvalidInput
from gpubridge.jobs import netguard
from gpubridge.jobs.guarded_http import GuardedTransport
from gpubridge.jobs.netguard import check_url


async def _rejected(url: str, *, allow_private: bool = False, require_https: bool = True) -> str:
    with pytest.raises(InvalidInput) as caught:
        async with asyncio.timeout(5):
            await check_url(url, allow_private=allow_private, require_https=require_https)
    return caught.value.code


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "gopher://example.com/",
        "https://user:pw@example.com/",
        "https://user@example.com/",
        "http:///path",
        "https://[::1",
        "example.com/hook",
    ],
)
async def test_malformed_or_non_http_urls_are_invalid(url: str) -> None:
    assert await _rejected(url, allow_private=True) == "invalid_url"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://localhost/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:7f00:1]/",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/",
        "https://172.16.0.1/",
        "https://192.168.1.1/",
        "https://0.0.0.0/",
        "https://[::]/",
        "https://100.64.0.1/",
        "https://224.0.0.1/",
        "https://240.0.0.1/",
        "https://[fe80::1]/",
        "https://[fc00::1]/",
        "https://[ff02::1]/",
        "https://[2002:7f00:1::]/",
        "https://[64:ff9b::a9fe:a9fe]/",
        "https://[64:ff9b:1::1]/",
        "https://2130706433/",
        "https://0x7f.1/",
    ],
)
async def test_non_public_addresses_are_unsafe(url: str) -> None:
    assert await _rejected(url) == "unsafe_url"


async def test_ipv4_mapped_loopback_over_http_is_unsafe_even_without_https_rule() -> None:
    assert await _rejected("http://[::ffff:127.0.0.1]/", require_https=False) == "unsafe_url"


async def test_public_address_is_accepted_and_pinned() -> None:
    target = await check_url(
        "https://93.184.215.14:8443/hook?x=1", allow_private=False, require_https=True
    )
    assert (target.host, target.port, target.ip) == ("93.184.215.14", 8443, "93.184.215.14")


async def test_ipv4_mapped_public_address_is_pinned_to_its_ipv4_form() -> None:
    target = await check_url("https://[::ffff:8.8.8.8]/", allow_private=False, require_https=True)
    assert target.ip == "8.8.8.8"


async def test_plain_http_needs_https_for_public_hosts() -> None:
    assert await _rejected("http://93.184.215.14/") == "unsafe_url"
    target = await check_url("http://93.184.215.14/", allow_private=False, require_https=False)
    assert target.port == 80


async def test_allow_private_admits_private_hosts_and_http_only_to_loopback() -> None:
    target = await check_url("http://localhost:8080/", allow_private=True, require_https=True)
    assert target.ip == "127.0.0.1"
    assert (await check_url("https://10.0.0.1/", allow_private=True, require_https=True)).ip
    assert await _rejected("http://10.0.0.1/", allow_private=True) == "unsafe_url"


async def test_a_lazy_client_is_made_on_first_use_and_closed_once() -> None:
    lazy = netguard.LazyGuardedClient(allow_private=True, require_https=False, timeout_s=5)
    assert not lazy.made
    await lazy.aclose()  # nothing made, nothing to close
    client = lazy.get()
    assert lazy.get() is client
    assert isinstance(client._transport, GuardedTransport)
    assert client.follow_redirects is False
    await lazy.aclose()
    assert client.is_closed and not lazy.made


async def test_a_gateway_makes_no_outbound_client_until_it_needs_one(tmp_path: Path) -> None:
    from tests.support.gateway_app import running_app, settings_for, write_catalog

    url = f"sqlite+aiosqlite:///{tmp_path / 'gpubridge.db'}"
    catalog = write_catalog(tmp_path / "catalog.yaml")
    async with running_app(settings_for(url, tmp_path, catalog, auto_migrate=True)) as (app, _):
        gateway = app.state.gateway
        assert not gateway.media._client.made
        assert not gateway.runner.webhooks._client.made
