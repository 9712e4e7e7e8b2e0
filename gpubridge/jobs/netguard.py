"""Rules for reaching untrusted URLs (webhook targets, media inputs).

A URL is parsed, its host resolved, and every resolved address vetted; the connection then goes
to the vetted address itself, so a second DNS answer (rebinding) cannot redirect it.
`guarded_http.GuardedTransport` applies this to every request an httpx client sends, redirect
hops included. httpx is imported when a URL is first parsed, not with this module.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


@dataclass(frozen=True, slots=True)
class ParsedTarget:
    """A vetted URL: connect to ``ip``, and send ``host`` as Host header and TLS SNI."""

    url: httpx.URL
    host: str
    port: int
    ip: str


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped IPv6 address stands for, else the address itself."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_public_address(ip: IPAddress) -> bool:
    """Whether ``ip`` is a globally routable unicast address, looking inside IPv6 wrappers."""
    ip = _unwrap(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return False
        embedded = ip.sixtofour
        if embedded is None and ip in _NAT64_WELL_KNOWN:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not is_public_address(embedded):
            return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


async def _resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = _unwrap(ipaddress.ip_address(str(sockaddr[0])))
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise InvalidInput(f"Could not resolve host {host!r}.", code="unresolvable_host")
    return addresses


def parse_url(url: str | httpx.URL) -> httpx.URL:
    """An untrusted URL parsed, if it is http(s) with a host and no credentials.

    Raises `InvalidInput` with code ``invalid_url`` otherwise, never httpx's ``InvalidURL``
    (which is no ``httpx.HTTPError``), so a URL httpx cannot parse (``http://0177.0.0.1/``)
    is refused like any other bad URL.
    """
    import httpx

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"Invalid URL: {exc}.", code="invalid_url") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidInput("Only http and https URLs are allowed.", code="invalid_url")
    if parsed.userinfo:
        raise InvalidInput("URLs must not contain credentials.", code="invalid_url")
    if not parsed.raw_host:
        raise InvalidInput("URL has no host.", code="invalid_url")
    return parsed


async def check_url(
    url: str | httpx.URL, *, allow_private: bool, require_https: bool
) -> ParsedTarget:
    """Vet an untrusted URL and return the address to connect to.

    Only http(s) without credentials is accepted. Every resolved address must be public unless
    ``allow_private``. With ``require_https``, plain http is still allowed when ``allow_private``
    is on and the host resolves only to loopback (development). Raises `InvalidInput` with code
    ``invalid_url``, ``unsafe_url`` or ``unresolvable_host``.
    """
    parsed = parse_url(url)
    host = parsed.raw_host.decode("ascii")
    plain_http = parsed.scheme == "http" and require_https
    if plain_http and not allow_private:
        raise InvalidInput("URL must use https.", code="unsafe_url")

    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await _resolve(host, port)
    if not allow_private and not all(is_public_address(ip) for ip in addresses):
        raise InvalidInput(
            f"Host {host!r} resolves to a private or reserved address.", code="unsafe_url"
        )
    if plain_http and not all(ip.is_loopback for ip in addresses):
        raise InvalidInput("URL must use https.", code="unsafe_url")
    return ParsedTarget(url=parsed, host=host, port=port, ip=str(addresses[0]))


class LazyGuardedClient:
    """A ``guarded_http.guarded_client`` made on first use.

    Making one imports httpx and loads the CA bundle into an SSL context (tens of milliseconds
    each): a server that never fetches a media URL or sends a webhook does not pay for them.
    """

    def __init__(
        self, *, allow_private: bool, require_https: bool, timeout_s: float, max_redirects: int = 0
    ) -> None:
        self._options: dict[str, Any] = {
            "allow_private": allow_private,
            "require_https": require_https,
            "timeout_s": timeout_s,
            "max_redirects": max_redirects,
        }
        self._client: httpx.AsyncClient | None = None

    @property
    def made(self) -> bool:
        return self._client is not None

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            from gpubridge.jobs.guarded_http import guarded_client

            self._client = guarded_client(**self._options)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
