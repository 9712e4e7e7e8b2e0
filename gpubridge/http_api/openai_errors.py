"""OpenAI's error shape for the ``/v1`` routes: ``{"error": {"message", "type", "code",
"param"}}``, with the HTTP status the domain error has everywhere else."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from gpubridge.errors import GpubridgeError, RateLimited

OPENAI_PREFIX = "/v1/"

_TYPES = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    429: "rate_limit_error",
}


def is_openai_path(path: str) -> bool:
    """Whether ``path`` is one of the OpenAI-compatible routes (errors in OpenAI's shape)."""
    return path == "/v1" or path.startswith(OPENAI_PREFIX)


def error_type(status: int) -> str:
    """OpenAI's ``type`` for an HTTP status."""
    if status >= 500:
        return "server_error"
    return _TYPES.get(status, "invalid_request_error")


def openai_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"message": message, "type": error_type(status), "code": code, "param": param}
    return JSONResponse({"error": body}, status_code=status, headers=dict(headers or {}))


def name_params(request: Request, names: Mapping[str, str]) -> None:
    """Report violations of these job input fields under their OpenAI parameter names."""
    request.state.openai_params = dict(names)


def param_of(request: Request, details: Mapping[str, Any]) -> str | None:
    """The OpenAI parameter the first violation in ``details`` is about, if any."""
    violations = details.get("violations")
    if not isinstance(violations, list) or not violations:
        return None
    first = violations[0]
    path = str(first.get("path", "")) if isinstance(first, dict) else ""
    top = path.replace(".", "/").split("/")[0]
    if not top or top == "(input)":
        return None
    names: dict[str, str] = getattr(request.state, "openai_params", {})
    return names.get(top, top)


def openai_domain_error(request: Request, exc: GpubridgeError) -> JSONResponse:
    """A domain error in OpenAI's shape (plus ``Retry-After`` and any headers it carries)."""
    headers = dict(getattr(exc, "headers", None) or {})
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    return openai_error(
        exc.status,
        exc.message,
        code=exc.code,
        param=param_of(request, exc.details),
        headers=headers,
    )


class JobEnded(GpubridgeError):
    """A job that did not complete (failed, cancelled, out of time), answered as an error."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str], **details: Any
    ) -> None:
        super().__init__(message, code=code, **details)
        self.status = status
        self.headers = dict(headers)
