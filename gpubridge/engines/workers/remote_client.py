"""A worker on another machine: it dials the gateway (outbound only, so a GPU box behind NAT
can serve), says what it runs, and takes jobs until the connection ends; then it dials again."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from gpubridge.engines.workers.channels import MessageChannel

if TYPE_CHECKING:
    from gpubridge.engines.workers.process import WorkerServer

log = logging.getLogger(__name__)

CONNECT_PATH = "/workers/connect"
REFUSED = 4401
"""The close code a gateway gives a worker whose token it refused."""


class TokenRefused(Exception):
    """The gateway refused the worker's token: dialling again would not help."""


def websocket_url(gateway_url: str) -> str:
    """``https://gpu.example.com`` -> ``wss://gpu.example.com/workers/connect``."""
    parts = urlsplit(gateway_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"the gateway URL must be http(s):// or ws(s)://, not {gateway_url!r}")
    path = parts.path.rstrip("/") + CONNECT_PATH
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class RemoteGateway:
    """Where a remote worker takes its jobs from, and the token that admits it."""

    def __init__(self, url: str, token: str, *, max_backoff_s: float = 30.0) -> None:
        self.url = websocket_url(url)
        self.token = token
        self.max_backoff_s = max_backoff_s

    async def serve_once(self, server: WorkerServer) -> None:
        """One connection: serve jobs until it ends."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with connect(self.url, additional_headers=headers, max_size=None) as ws:

                async def receive() -> bytes | None:
                    try:
                        data = await ws.recv()
                    except ConnectionClosed as closed:
                        if closed.rcvd is not None and closed.rcvd.code == REFUSED:
                            raise TokenRefused(closed.rcvd.reason) from closed
                        return None
                    return data if isinstance(data, bytes) else data.encode()

                async def send(data: bytes) -> None:
                    try:
                        await ws.send(data)
                    except ConnectionClosed as exc:
                        raise ConnectionError("the gateway closed the connection") from exc

                log.info("connected to %s", self.url)
                await server.serve(MessageChannel(send, receive, ws.close))
        except InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                raise TokenRefused(f"HTTP {exc.response.status_code}") from exc
            raise

    async def serve_forever(self, server: WorkerServer) -> None:
        """Serve, and dial again with backoff whenever the connection ends, until the token
        is refused or the worker is stopping."""
        backoff = 0.5
        while not server.stopping:
            try:
                await self.serve_once(server)
                backoff = 0.5
                if server.stopping:
                    return
            except TokenRefused as refused:
                log.error("the gateway refused this worker's token (%s); stopping", refused)
                return
            except (TimeoutError, OSError, ConnectionError) as exc:
                log.warning("cannot reach the gateway at %s: %s", self.url, exc)
            except Exception as exc:
                log.warning("the connection to the gateway failed: %r", exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
