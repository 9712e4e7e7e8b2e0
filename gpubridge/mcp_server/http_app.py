"""The MCP server over streamable HTTP, as a route of the gateway's Starlette app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import BaseRoute, Route

from gpubridge.gateway import Gateway
from gpubridge.mcp_server.server import build_server

MCP_PATH = "/mcp"


@dataclass(frozen=True)
class McpHttp:
    """The MCP route and the session manager whose ``run()`` the host lifespan enters once."""

    server: Server[Any]
    session_manager: StreamableHTTPSessionManager

    def routes(self) -> list[BaseRoute]:
        return [Route(MCP_PATH, endpoint=StreamableHTTPASGIApp(self.session_manager))]

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Run the session manager for the block.

        It runs in a task of its own, so the block may be entered and left from different
        tasks (as test harnesses and some ASGI servers do with lifespans).
        """
        stop = asyncio.Event()
        ready = asyncio.Event()

        async def serve() -> None:
            async with self.session_manager.run():
                ready.set()
                await stop.wait()

        task = asyncio.create_task(serve())
        readiness = asyncio.create_task(ready.wait())
        await asyncio.wait({task, readiness}, return_when=asyncio.FIRST_COMPLETED)
        readiness.cancel()
        if task.done():
            task.result()  # it failed to start: raise why
        try:
            yield
        finally:
            stop.set()
            await task


def mcp_http(gateway: Gateway) -> McpHttp:
    """The MCP door for the HTTP app; callers pay with their own bearer key."""
    server = build_server(gateway)
    manager = StreamableHTTPSessionManager(
        app=server,
        security_settings=transport_security(gateway.settings.mcp_allowed_hosts),
    )
    return McpHttp(server, manager)


def transport_security(hosts: Sequence[str]) -> TransportSecuritySettings:
    """DNS-rebinding protection accepting ``hosts`` on any port (``*``: any host)."""
    if "*" in hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    allowed_hosts: list[str] = []
    for host in hosts:
        allowed_hosts += [host, f"{host}:*"] if not _has_port(host) else [host]
    origins = [f"{scheme}://{host}" for host in allowed_hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=allowed_hosts,
        allowed_origins=origins,
    )


def _has_port(host: str) -> bool:
    return host.rpartition("]")[2].count(":") == 1 if host.startswith("[") else ":" in host
