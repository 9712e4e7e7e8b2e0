"""The MCP front door: every catalog service as a tool (stdio and streamable HTTP)."""

from gpubridge.mcp_server.http_app import McpHttp, mcp_http
from gpubridge.mcp_server.server import build_server
from gpubridge.mcp_server.stdio import serve_stdio

__all__ = ["McpHttp", "build_server", "mcp_http", "serve_stdio"]
