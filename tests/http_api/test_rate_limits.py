"""Rate limits: per API key per minute, per client IP per second, behind trusted proxies only."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gpubridge.app import create_app
from gpubridge.errors import ConfigurationError
from gpubridge.http_api.ratelimit import SweptMemoryStorage, TrustedProxies, limits_storage
from gpubridge.settings import Settings
from tests.support.gateway_app import auth, register, settings_for, write_catalog

REDIS_URL = "redis://127.0.0.1:6379/15"


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def limited_settings(database_url: str, tmp_path: Path, **limits: Any) -> Settings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    catalog = write_catalog(tmp_path / "catalog.yaml")
    return settings_for(database_url, tmp_path, catalog, **limits)


@asynccontextmanager
async def limited_app(database_url: str, tmp_path: Path, **limits: Any) -> AsyncIterator[Starlette]:
    app = create_app(limited_settings(database_url, tmp_path, **limits))
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def client_from(app: Starlette, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gpubridge.test") as client:
        yield client


async def test_the_31st_keyed_request_in_a_minute_is_429_while_another_key_passes(
    database, database_url: str, tmp_path: Path
) -> None:
    async with (
        limited_app(database_url, tmp_path, rate_limit_per_key_per_minute=30) as app,
        client_from(app, "203.0.113.7") as client,
    ):
        first, second = (
            await register(client, "a@example.com"),
            await register(client, "b@example.com"),
        )
        for n in range(30):
            ok = await client.get("/account/balance", headers=auth(first))
            assert ok.status_code == 200, ok.text
            assert ok.headers["RateLimit-Limit"] == "30"
            assert ok.headers["RateLimit-Remaining"] == str(29 - n)
        limited = await client.get("/account/balance", headers=auth(first))
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.headers["RateLimit-Limit"] == "30"
        assert limited.headers["RateLimit-Remaining"] == "0"
        assert 1 <= int(limited.headers["RateLimit-Reset"]) <= 60
        assert first not in limited.text

        other = await client.get("/account/balance", headers=auth(second))
        assert other.status_code == 200
        assert other.headers["RateLimit-Remaining"] == "29"


async def test_the_21st_request_in_one_second_from_one_ip_is_429(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gpubridge.db'}"
    async with (
        limited_app(url, tmp_path, rate_limit_per_ip_per_second=20, auto_migrate=True) as app,
        client_from(app, "198.51.100.1") as client,
        client_from(app, "198.51.100.2") as neighbour,
    ):
        # At once, so that all 21 fall in one window however slow this machine is today.
        responses = await asyncio.gather(*(client.get("/catalog") for _ in range(21)))
        assert sorted(r.status_code for r in responses) == [200] * 20 + [429]
        limited = await client.get("/catalog")
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) == 1
        assert limited.headers["RateLimit-Limit"] == "20"
        assert (await neighbour.get("/catalog")).status_code == 200
        assert (await client.get("/healthz")).status_code == 200  # probes are never limited
        # Stripe's webhook deliveries are never refused (Stripe is not configured here: 503).
        assert (await client.post("/webhooks/stripe", content=b"{}")).status_code != 429


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gpubridge.db'}"
    async with (
        limited_app(
            url,
            tmp_path,
            rate_limit_per_ip_per_second=2,
            trusted_proxies=["10.0.0.0/8"],
            auto_migrate=True,
        ) as app,
        client_from(app, "192.0.2.50") as direct,
        client_from(app, "10.1.2.3") as proxy,
    ):
        # An untrusted peer's X-Forwarded-For is ignored: each spoofed value counts as the peer.
        spoofed = [
            (await direct.get("/catalog", headers={"X-Forwarded-For": f"192.0.2.{n}"})).status_code
            for n in range(3)
        ]
        assert spoofed == [200, 200, 429]

        # Behind the trusted proxy, each forwarded client has its own count.
        forwarded = {"X-Forwarded-For": "203.0.113.9"}
        assert [(await proxy.get("/catalog", headers=forwarded)).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        other = {"X-Forwarded-For": "forged, 203.0.113.10, 10.9.9.9"}
        assert (await proxy.get("/catalog", headers=other)).status_code == 200


def test_the_client_is_the_right_most_untrusted_hop() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "2001:db8::/32"])
    assert proxies.client_ip("10.0.0.1", "1.1.1.1, 2.2.2.2, 10.0.0.7") == "2.2.2.2"
    assert proxies.client_ip("10.0.0.1", "2001:db8::5") == "2001:db8::5"
    assert proxies.client_ip("10.0.0.1", "9.9.9.9, 2001:db8::5") == "9.9.9.9"
    assert proxies.client_ip("10.0.0.1", "10.0.0.2") == "10.0.0.2"
    assert proxies.client_ip("10.0.0.1", "3.3.3.3, not-an-ip") == "10.0.0.1"
    assert proxies.client_ip("10.0.0.1", None) == "10.0.0.1"
    assert proxies.client_ip("8.8.8.8", "1.1.1.1") == "8.8.8.8"
    assert TrustedProxies([]).client_ip("10.0.0.1", "1.1.1.1") == "10.0.0.1"


@pytest.mark.skipif(not redis_reachable(), reason="Redis is not reachable at 127.0.0.1:6379")
async def test_replicas_share_counts_through_redis(
    database, database_url: str, tmp_path: Path
) -> None:
    limits = {"rate_limit_per_key_per_minute": 3, "redis_url": REDIS_URL}
    async with (
        limited_app(database_url, tmp_path / "a", **limits) as first,
        limited_app(database_url, tmp_path / "b", **limits) as second,
        client_from(first, "192.0.2.1") as one,
        client_from(second, "192.0.2.1") as two,
    ):
        # A new key starts its own count: nothing is reset in the store, which other test
        # runs (the other database's, another worker's) may be counting in at the same time.
        key = await register(one, f"{uuid.uuid4().hex}@example.com")
        assert (await one.get("/account/balance", headers=auth(key))).status_code == 200
        assert (await two.get("/account/balance", headers=auth(key))).status_code == 200
        assert (await one.get("/account/balance", headers=auth(key))).status_code == 200
        limited = await two.get("/account/balance", headers=auth(key))
        assert limited.status_code == 429
        assert limited.headers["RateLimit-Limit"] == "3"


class BrokenLimiter:
    async def hit(self, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("the store is down")

    async def get_window_stats(self, *args: Any) -> Any:
        raise ConnectionError("the store is down")


async def test_a_failing_counter_store_lets_requests_through() -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from gpubridge.http_api.ratelimit import RateLimitMiddleware

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    inner = Starlette(routes=[Route("/", hello)])
    app = RateLimitMiddleware(
        inner,
        limiter=BrokenLimiter(),  # type: ignore[arg-type]
        per_key_per_minute=1,
        per_ip_per_second=1,
        proxies=TrustedProxies([]),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for _ in range(3):
            response = await client.get("/", headers=auth("gpub_x"))
            assert response.status_code == 200


async def test_counters_are_kept_under_the_key_hash_never_the_key(
    database, database_url: str, tmp_path: Path
) -> None:
    async with (
        limited_app(database_url, tmp_path, rate_limit_per_key_per_minute=5) as app,
        client_from(app, "192.0.2.9") as client,
    ):
        key = await register(client)
        assert (await client.get("/account/balance", headers=auth(key))).status_code == 200
        stored = " ".join(app.state.components.limits_storage.storage)
        assert key not in stored
        assert hashlib.sha256(key.encode()).hexdigest() in stored


async def test_expired_memory_counters_are_swept() -> None:
    storage = SweptMemoryStorage()
    assert await storage.incr("old", 60) == 1
    assert await storage.incr("old", 60) == 2
    storage.expirations["old"] = 0.0  # its window is over
    storage._next_sweep = 0.0
    assert await storage.incr("new", 60) == 1
    assert "old" not in storage.storage and "old" not in storage.expirations
    assert await storage.incr("old", 60) == 1  # a fresh window


def test_a_bad_redis_url_refuses_to_start() -> None:
    with pytest.raises(ConfigurationError, match="redis_url"):
        limits_storage("http://127.0.0.1:6379")
