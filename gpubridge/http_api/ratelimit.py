"""Rate limits as pure ASGI middleware: requests per API key and per client IP.

Counts live in a ``limits`` storage: in process memory by default, Redis when configured so
that replicas share them. Fixed windows: one counter increment per limit and request.
The API key is counted by its SHA-256, never by the key itself.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Iterable

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, RateLimiter
from limits.errors import ConfigurationError as LimitsConfigurationError
from limits.storage import storage_from_string
from limits.util import WindowStats
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpubridge.errors import ConfigurationError
from gpubridge.http_api.errors import HTTP_CODES, error_response
from gpubridge.http_api.openai_errors import is_openai_path, openai_error
from gpubridge.settings import Settings

log = logging.getLogger(__name__)

# Probes, and Stripe's signed webhook deliveries (which arrive in bursts from a few IPs and
# must never be refused: a refused delivery is retried later and delays the credit).
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/metrics", "/webhooks/stripe"})

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def limits_storage(redis_url: str | None) -> Storage:
    """The counter store: Redis (shared by replicas) when ``redis_url`` is set, else memory."""
    if not redis_url:
        return SweptMemoryStorage()
    uri = redis_url if redis_url.startswith("async+") else "async+" + redis_url
    try:
        storage = storage_from_string(uri)
    except LimitsConfigurationError as exc:
        raise ConfigurationError(f"redis_url is not a usable Redis URL: {exc}") from None
    if not isinstance(storage, Storage):
        raise ConfigurationError("redis_url must name an async Redis store (redis://...)")
    return storage


class SweptMemoryStorage(MemoryStorage):
    """The ``limits`` in-memory store for fixed windows, with expired counters swept at most
    once a second: the stock store scans every counter after each increment."""

    def __init__(self) -> None:
        super().__init__()
        self._next_sweep = 0.0

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        # No await inside: atomic on the event loop, so no lock is needed.
        now = time.time()
        if now >= self._next_sweep:
            self._sweep(now)
        if self.expirations.get(key, 0) <= now:
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
        self.storage[key] += amount
        if self.storage[key] == amount:
            self.expirations[key] = now + expiry
        return self.storage[key]

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + 1.0
        for key in [key for key, at in self.expirations.items() if at <= now]:
            self.storage.pop(key, None)
            self.expirations.pop(key, None)


def close_limits_storage(storage: Storage) -> None:
    """Close a Redis store's connections (``limits`` offers no close of its own)."""
    client = getattr(getattr(storage, "bridge", None), "storage", None)
    pool = getattr(client, "connection_pool", None)
    disconnect = getattr(pool, "disconnect", None)
    if callable(disconnect):
        disconnect()


class TrustedProxies:
    """Find the client's address behind proxies the operator trusts."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(item, strict=False) for item in networks
        )

    def trusts(self, address: str) -> bool:
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The socket peer, or, when the peer is a trusted proxy, the right-most address in
        ``X-Forwarded-For`` that is not itself a trusted proxy."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            address = hop.strip()
            try:
                ipaddress.ip_address(address)
            except ValueError:
                break  # garbage: keep the last address a trusted proxy vouched for
            client = address
            if not self.trusts(address):
                break
        return client


def _header(scope: Scope, name: bytes) -> str | None:
    values = [value for key, value in scope["headers"] if key == name]
    if not values:
        return None
    return ",".join(value.decode("latin-1") for value in values)


def _bearer_digest(scope: Scope) -> str | None:
    header = _header(scope, b"authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    return hashlib.sha256(value.encode()).hexdigest()


def _seconds_until(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))


class RateLimitMiddleware:
    """429 with ``Retry-After`` and ``RateLimit-*`` headers once a key or an IP is over limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        per_key_per_minute: int,
        per_ip_per_second: int,
        proxies: TrustedProxies,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.per_key: RateLimitItem | None = (
            RateLimitItemPerMinute(per_key_per_minute) if per_key_per_minute > 0 else None
        )
        self.per_ip: RateLimitItem | None = (
            RateLimitItemPerSecond(per_ip_per_second) if per_ip_per_second > 0 else None
        )
        self.proxies = proxies
        self._warned_at = -math.inf

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return

        if self.per_ip is not None:
            client = scope.get("client")
            peer = client[0] if client else "unknown"
            ip = self.proxies.client_ip(peer, _header(scope, b"x-forwarded-for"))
            allowed, stats = await self._count(self.per_ip, "ip", ip, stats_if_allowed=False)
            if not allowed and stats is not None:
                await self._reject(scope, receive, send, self.per_ip, "ip", stats)
                return

        digest = _bearer_digest(scope) if self.per_key is not None else None
        if digest is None or self.per_key is None:
            await self.app(scope, receive, send)
            return
        allowed, stats = await self._count(self.per_key, "key", digest, stats_if_allowed=True)
        if stats is None:
            await self.app(scope, receive, send)
            return
        if not allowed:
            await self._reject(scope, receive, send, self.per_key, "key", stats)
            return
        headers = _limit_headers(self.per_key, stats.remaining, stats.reset_time)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _count(
        self, item: RateLimitItem, scope: str, identity: str, *, stats_if_allowed: bool
    ) -> tuple[bool, WindowStats | None]:
        """Count one request. If the counter store fails the request passes (an outage of
        the store must not take the API down); that is logged at most once a minute."""
        try:
            allowed = await self.limiter.hit(item, scope, identity)
            if allowed and not stats_if_allowed:
                return True, None
            return allowed, await self.limiter.get_window_stats(item, scope, identity)
        except Exception as exc:
            now = time.monotonic()
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning("rate-limit store failed, not limiting: %s", type(exc).__name__)
            return True, None

    async def _reject(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        item: RateLimitItem,
        kind: str,
        stats: WindowStats,
    ) -> None:
        per = "minute per API key" if kind == "key" else "second per client IP"
        retry_after = _seconds_until(stats.reset_time)
        message = f"rate limit exceeded: {item.amount} requests per {per}; retry in {retry_after} s"
        if is_openai_path(scope["path"]):
            response = openai_error(429, message, code="rate_limit_exceeded")
        else:
            response = error_response(429, HTTP_CODES[429], message, retry_after=retry_after)
        response.headers["Retry-After"] = str(retry_after)
        for name, value in _limit_headers(item, 0, stats.reset_time):
            response.headers[name.decode()] = value.decode()
        await response(scope, receive, send)


def _limit_headers(
    item: RateLimitItem, remaining: int, reset_time: float
) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-limit", str(item.amount).encode()),
        (b"ratelimit-remaining", str(max(0, remaining)).encode()),
        (b"ratelimit-reset", str(_seconds_until(reset_time)).encode()),
    ]


def rate_limit_middleware(settings: Settings, storage: Storage) -> list[Middleware]:
    """The rate-limit middleware for the app, or none when both limits are disabled."""
    per_key = settings.rate_limit_per_key_per_minute
    per_ip = settings.rate_limit_per_ip_per_second
    if per_key <= 0 and per_ip <= 0:
        return []
    return [
        Middleware(
            RateLimitMiddleware,
            limiter=FixedWindowRateLimiter(storage),
            per_key_per_minute=per_key,
            per_ip_per_second=per_ip,
            proxies=TrustedProxies(settings.trusted_proxies),
        )
    ]
