"""An httpx client for untrusted URLs: every request, redirect hops included, goes to an
address vetted by ``netguard.check_url``."""

from __future__ import annotations

import ssl
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from gpubridge.jobs.netguard import check_url


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport that vets every request's URL and connects to the vetted address.

    The connection is made to the vetted IP (the request URL's host is swapped for it), while the
    Host header and TLS SNI / certificate checks keep the original hostname (httpcore's
    ``sni_hostname`` extension). Keep-alive is off, so every request opens a fresh connection to
    the address just vetted and no connection is shared between hostnames on one IP.
    """

    def __init__(
        self, *, allow_private: bool, require_https: bool, verify: ssl.SSLContext | bool = True
    ) -> None:
        super().__init__(verify=verify, limits=httpx.Limits(max_keepalive_connections=0))
        self._allow_private = allow_private
        self._require_https = require_https

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = await check_url(
            request.url, allow_private=self._allow_private, require_https=self._require_https
        )
        pinned = httpx.Request(
            request.method,
            request.url.copy_with(host=target.ip),
            headers=request.headers,
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": target.host},
        )
        return await super().handle_async_request(pinned)


def guarded_client(
    *, allow_private: bool, require_https: bool, timeout_s: float, max_redirects: int = 0
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for untrusted URLs.

    Redirects are not followed when ``max_redirects`` is 0 (webhooks); otherwise up to that many
    hops are followed, each one vetted again by the transport (media), and more raise
    ``httpx.TooManyRedirects``. No proxies, ``.netrc`` or cookies are used.
    """
    return httpx.AsyncClient(
        transport=GuardedTransport(allow_private=allow_private, require_https=require_https),
        timeout=timeout_s,
        follow_redirects=max_redirects > 0,
        max_redirects=max_redirects,
        trust_env=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )
