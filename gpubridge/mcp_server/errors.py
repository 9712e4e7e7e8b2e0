"""The one table mapping domain errors to MCP tool results (``isError: true``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from mcp_types import CallToolResult, TextContent

from gpubridge.errors import GpubridgeError
from gpubridge.payments.x402 import X402Required

log = logging.getLogger(__name__)

R = TypeVar("R")


def error_result(exc: GpubridgeError) -> CallToolResult:
    """An ``isError`` result carrying the error's code, message and details.

    An x402 challenge follows the x402 MCP transport instead: the PaymentRequired object is
    the structured content and its JSON the first text block (the message follows).
    """
    if isinstance(exc, X402Required):
        required = _jsonable(exc.payment_required)
        return CallToolResult(
            content=[
                TextContent(text=json.dumps(required)),
                TextContent(text=f"{exc.code}: {exc.message}"),
            ],
            structured_content=required,
            is_error=True,
        )
    body = _jsonable(exc.to_dict())
    return CallToolResult(
        content=[TextContent(text=f"{exc.code}: {exc.message}")],
        structured_content={"error": body},
        is_error=True,
    )


def internal_error_result() -> CallToolResult:
    """What a caller sees of an unexpected failure: no internals, just the code."""
    return CallToolResult(
        content=[TextContent(text="internal_error: an unexpected error occurred")],
        structured_content={
            "error": {"code": "internal_error", "message": "an unexpected error occurred"}
        },
        is_error=True,
    )


async def guarded(call: Awaitable[R], tool: str) -> R | CallToolResult:
    """Await a tool call; a domain error or an unexpected one becomes an ``isError`` result."""
    try:
        return await call
    except GpubridgeError as exc:
        if exc.status >= 500 and exc.status != 503:
            log.error("tool call failed: %s", exc.code, extra={"tool": tool})
        return error_result(exc)
    except Exception:
        log.exception("tool call failed unexpectedly", extra={"tool": tool})
        return internal_error_result()


def _jsonable(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(body, default=str))
    return result
