"""Request bodies under a size cap and one deadline, as pure ASGI middleware.

Every route reads its body through the ``receive`` this middleware hands down, so no route can
hold more than its cap in memory or wait on a slow client for longer than the deadline. A
``Content-Length`` over the cap is answered 413 before any of the body is read; otherwise the
bytes are counted as they arrive and the read fails with ``PayloadTooLarge`` (413) as soon as
they pass the cap, or with ``RequestTimeout`` (408) once the body has taken longer than the
deadline. After the body is complete, ``receive`` is passed through untouched (streaming
responses wait on it for the client's disconnect).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpubridge.errors import GpubridgeError, PayloadTooLarge, RequestTimeout
from gpubridge.http_api.dashboard import MAX_FORM_BYTES
from gpubridge.http_api.dashboard import PATH as DASHBOARD_PATH
from gpubridge.http_api.dashboard_playground import PLAYGROUND_PATH
from gpubridge.http_api.errors import error_response
from gpubridge.http_api.openai_errors import is_openai_path, openai_error
from gpubridge.http_api.topups import MAX_WEBHOOK_BYTES
from gpubridge.settings import Settings

MAX_BODY_BYTES = 4 * 1024 * 1024
"""The cap for any route not named in ``body_caps``."""
MEDIA_UPLOAD_PREFIX = "/v1/audio/"
MEDIA_FORM_OVERHEAD_BYTES = 64 * 1024
"""Room for a media upload form's other fields and part headers beyond the media size cap."""


@dataclass(frozen=True, slots=True)
class BodyCaps:
    """The largest body each route accepts, in bytes."""

    default: int
    media_upload: int
    dashboard_form: int = MAX_FORM_BYTES
    stripe_webhook: int = MAX_WEBHOOK_BYTES

    def for_path(self, path: str) -> int:
        if path.startswith((MEDIA_UPLOAD_PREFIX, PLAYGROUND_PATH + "/")):
            return self.media_upload
        if path == "/webhooks/stripe":
            return self.stripe_webhook
        if path == DASHBOARD_PATH or path.startswith(DASHBOARD_PATH + "/"):
            return self.dashboard_form
        return self.default


def body_caps(settings: Settings) -> BodyCaps:
    return BodyCaps(
        default=MAX_BODY_BYTES, media_upload=settings.media_max_bytes + MEDIA_FORM_OVERHEAD_BYTES
    )


def _describe(size: int) -> str:
    if size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    if size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} bytes"


def _too_large(cap: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {_describe(cap)}", max_bytes=cap)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def _error(scope: Scope, exc: GpubridgeError) -> Response:
    if is_openai_path(scope["path"]):
        response: Response = openai_error(exc.status, exc.message, code=exc.code)
    else:
        response = error_response(exc.status, exc.code, exc.message, **exc.details)
    response.headers["Connection"] = "close"
    return response


class _LimitedBody:
    """One request's ``receive``: counts the body's bytes against ``cap`` and bounds the
    whole body by one deadline, measured from the first read."""

    def __init__(self, receive: Receive, cap: int, timeout_s: float) -> None:
        self._receive = receive
        self._cap = cap
        self._timeout_s = timeout_s
        self._deadline: float | None = None
        self._size = 0
        self.complete = False
        self.refused = False

    async def __call__(self) -> Message:
        if self.complete:
            return await self._receive()
        # asyncio's own deadline: a third of the CPU of anyio's cancel scope, on every request.
        now = asyncio.get_running_loop().time()
        if self._deadline is None:
            self._deadline = now + self._timeout_s
        try:
            if self._deadline <= now:
                raise TimeoutError
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            self.refused = True
            raise RequestTimeout(
                f"the request body did not arrive within {self._timeout_s:g} s"
            ) from None
        if message["type"] != "http.request":
            self.complete = True
            return message
        self._size += len(message.get("body", b""))
        if self._size > self._cap:
            self.refused = True
            raise _too_large(self._cap)
        if not message.get("more_body", False):
            self.complete = True
        return message


class BodyLimitMiddleware:
    """413 ``payload_too_large`` over a route's cap, 408 ``request_timeout`` for a body that
    arrives too slowly; the connection is closed after either."""

    def __init__(self, app: ASGIApp, *, caps: BodyCaps, timeout_s: float) -> None:
        self.app = app
        self.caps = caps
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.caps.for_path(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > cap:
            await _error(scope, _too_large(cap))(scope, receive, send)
            return

        body = _LimitedBody(receive, cap, self.timeout_s)
        started = False

        async def send_closing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if body.refused:  # the rest of the body is never read: end the connection
                    headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, body, send_closing)
        except (PayloadTooLarge, RequestTimeout) as exc:
            # Raised past the app's exception handlers (an app mounted as a plain ASGI app).
            if started or not body.refused:
                raise
            await _error(scope, exc)(scope, receive, send)


def body_limit_middleware(settings: Settings) -> Middleware:
    return Middleware(
        BodyLimitMiddleware, caps=body_caps(settings), timeout_s=settings.request_body_timeout_s
    )
