"""The MCP front door: every catalog service as a tool (stdio and streamable HTTP)."""
