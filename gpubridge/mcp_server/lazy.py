"""The ``/mcp`` route, built on its first request so the MCP SDK stays off the start-up path."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from gpubridge.gateway import Gateway


class McpEndpoint:
    """An ASGI app that builds the MCP door (and starts its session manager) once, on the
    first request, then hands every request to it."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._app: ASGIApp | None = None
        self._lock = asyncio.Lock()
        self._running = AsyncExitStack()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app or await self._start()
        await app(scope, receive, send)

    async def _start(self) -> ASGIApp:
        async with self._lock:
            if self._app is None:
                from mcp.server.streamable_http_manager import StreamableHTTPASGIApp

                from gpubridge.mcp_server.http_app import mcp_http

                door = mcp_http(self._gateway)
                await self._running.enter_async_context(door.run())
                self._app = StreamableHTTPASGIApp(door.session_manager)
            return self._app

    async def aclose(self) -> None:
        """Stop the session manager if it was started."""
        await self._running.aclose()
        self._app = None
