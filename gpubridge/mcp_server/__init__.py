"""The MCP front door: every catalog service as a tool (stdio and streamable HTTP).

The package imports the MCP SDK only when its modules are used (``lazy.McpEndpoint`` builds
the HTTP door on the first request), so the gateway starts without paying for it.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "McpHttp": "gpubridge.mcp_server.http_app",
    "mcp_http": "gpubridge.mcp_server.http_app",
    "build_server": "gpubridge.mcp_server.server",
    "serve_stdio": "gpubridge.mcp_server.stdio",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
