"""``gpubridge mcp --remote URL``: a stdio MCP server that forwards to a remote gpubridge.

A desktop agent starts it like the local server; tool listings, calls (with their progress),
and resource reads go to the remote's ``/mcp`` over streamable HTTP, paid with the key in
``GPUBRIDGE_API_KEY``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    ListResourcesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
)

from gpubridge.errors import ServiceUnavailable
from gpubridge.mcp_server.errors import error_result
from gpubridge.mcp_server.http_app import MCP_PATH
from gpubridge.mcp_server.stdio import serve_stdio

RESERVED_META_PREFIX = "io.modelcontextprotocol/"
PROGRESS_META_KEYS = ("progressToken", "progress_token")
TIMEOUT = httpx2.Timeout(30.0, read=300.0)


async def serve_remote(url: str, api_key: str | None) -> None:
    """Serve stdio, forwarding to the gpubridge MCP endpoint at ``url``."""
    endpoint = mcp_endpoint(url)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=TIMEOUT))
        try:
            remote = await stack.enter_async_context(
                Client(streamable_http_client(endpoint, http_client=http))
            )
        except Exception as exc:
            raise ServiceUnavailable(
                f"cannot reach the gpubridge MCP endpoint at {endpoint}: {exc}",
                code="remote_unavailable",
            ) from exc
        await serve_stdio(build_proxy(remote, endpoint))


def mcp_endpoint(url: str) -> str:
    """``url`` itself, or its ``/mcp`` endpoint when it names only the server."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path=MCP_PATH)
    return urlunsplit(parts)


def build_proxy(remote: Client, endpoint: str) -> Server[Any]:
    """A server whose every request is answered by ``remote``."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        result = await remote.list_tools(cursor=params.cursor if params else None)
        return result.model_copy(update={"meta": _own_meta(result.meta)})

    async def call_tool(
        ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult:
        try:
            result = await remote.call_tool(
                params.name,
                params.arguments,
                progress_callback=ctx.session.report_progress,
                meta=_forwarded_meta(params.meta),  # type: ignore[arg-type]
            )
        except MCPError:
            raise
        except Exception as exc:
            return error_result(
                ServiceUnavailable(
                    f"the gpubridge at {endpoint} did not answer: {exc}",
                    code="remote_unavailable",
                )
            )
        return result.model_copy(update={"meta": _own_meta(result.meta)})

    async def list_resources(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        result = await remote.list_resources(cursor=params.cursor if params else None)
        return result.model_copy(update={"meta": _own_meta(result.meta)})

    async def read_resource(
        ctx: ServerRequestContext[Any], params: ReadResourceRequestParams
    ) -> ReadResourceResult:
        result = await remote.read_resource(params.uri)
        return result.model_copy(update={"meta": _own_meta(result.meta)})

    info = remote.server_info
    return Server(
        info.name if info else "gpubridge",
        version=info.version if info else "",
        title=info.title if info else None,
        instructions=remote.session.instructions,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )


def _forwarded_meta(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the caller put in ``_meta`` (an x402 payment, say), less what each hop sets."""
    kept = {
        key: value
        for key, value in (meta or {}).items()
        if not key.startswith(RESERVED_META_PREFIX) and key not in PROGRESS_META_KEYS
    }
    return kept or None


def _own_meta(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return _forwarded_meta(meta)
