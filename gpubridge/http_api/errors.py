"""The one table mapping domain errors to HTTP responses."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gpubridge.errors import GpubridgeError, RateLimited
from gpubridge.http_api.openai_errors import is_openai_path, openai_domain_error, openai_error
from gpubridge.http_api.x402 import settlement_pending, x402_required
from gpubridge.payments.x402 import SettlementPending, X402Required

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
}


def error_response(status: int, code: str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


async def domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GpubridgeError)
    if exc.status >= 500 and exc.status != 503:
        log.error("request failed: %s", exc.code, extra={"path": request.url.path})
    if is_openai_path(request.url.path):
        return openai_domain_error(request, exc)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    if is_openai_path(request.url.path):
        return openai_error(exc.status_code, str(exc.detail), code=code, headers=exc.headers)
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail)}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", extra={"path": request.url.path})
    if is_openai_path(request.url.path):
        return openai_error(500, "an unexpected error occurred", code="internal_error")
    return error_response(500, "internal_error", "an unexpected error occurred")


EXCEPTION_HANDLERS = {
    X402Required: x402_required,
    SettlementPending: settlement_pending,
    GpubridgeError: domain_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
