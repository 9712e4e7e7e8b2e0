"""The dashboard's session: the signed cookie (account id, a fingerprint of the key it was opened
with, a CSRF token), the CSRF check on forms, and the responses every page shares."""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any
from urllib.parse import parse_qsl

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gpubridge.errors import GpubridgeError
from gpubridge.gateway import Gateway
from gpubridge.payments.accounts import Account
from gpubridge.settings import Settings

log = logging.getLogger(__name__)

PATH = "/account/dashboard"
SESSION_MAX_AGE_S = 12 * 3600
NO_STORE = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    # The stylesheet and the script are files of this server; pygal's inline SVG carries its
    # own <style>; outputs and the job's event stream are same-origin (/files, /status).
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "img-src 'self' data:; media-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}

Form = dict[str, str]


def session_middleware(settings: Settings) -> Middleware:
    """The signed session cookie, limited to the dashboard's paths."""
    if settings.dashboard_secret is not None:
        secret = settings.dashboard_secret.get_secret_value()
    else:
        log.warning(
            "GPUBRIDGE_DASHBOARD_SECRET is unset: using a random one, so dashboard sessions "
            "end when the server restarts"
        )
        secret = secrets.token_urlsafe(32)
    return Middleware(
        DashboardSessions,
        secret_key=secret,
        session_cookie="gpubridge_dashboard",
        max_age=SESSION_MAX_AGE_S,
        path=PATH,
        same_site="lax",
        https_only=settings.public_url.startswith("https://"),
    )


class DashboardSessions:
    """Starlette's ``SessionMiddleware`` on the dashboard's paths, where the cookie is sent;
    every other request (the paid API) goes straight on, without a session to load or save."""

    def __init__(self, app: ASGIApp, /, **options: Any) -> None:
        self.app = app
        self.sessions = SessionMiddleware(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if path == PATH or path.startswith(f"{PATH}/"):
            await self.sessions(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, given: str) -> bool:
    expected = request.session.get("csrf")
    return isinstance(expected, str) and hmac.compare_digest(expected.encode(), given.encode())


async def url_form(request: Request) -> Form | None:
    """The url-encoded form, or None when its CSRF token is missing or wrong."""
    raw = await request.body()
    form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return form if csrf_ok(request, form.get("csrf_token", "")) else None


def html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=NO_STORE)


def forbidden() -> Response:
    return PlainTextResponse(
        "Forbidden: the form's security token is missing or wrong; reload the page.",
        status_code=403,
        headers=NO_STORE,
    )


def back(
    request: Request,
    *,
    notice: str | None = None,
    error: str | None = None,
    to: str = PATH,
) -> Response:
    if notice:
        request.session["notice"] = notice
    if error:
        request.session["error"] = error
    return RedirectResponse(to, status_code=303, headers=NO_STORE)


def notices(request: Request) -> dict[str, Any]:
    """The one-time notice and error a redirect left for the next page."""
    return {
        "notice": request.session.pop("notice", None),
        "error": request.session.pop("error", None),
    }


def sign_out(request: Request) -> None:
    request.session.pop("account_id", None)
    request.session.pop("key_generation", None)


async def signed_in(request: Request, gateway: Gateway) -> tuple[Account, dict[str, Any]] | None:
    """The signed-in account (as fresh as the database) and its balance summary, or None."""
    account_id = request.session.get("account_id")
    signed_with = request.session.get("key_generation")
    if not isinstance(account_id, str) or not isinstance(signed_with, str):
        sign_out(request)
        return None
    # A session lasts only as long as the key it was opened with: rotation or recovery (on
    # any replica) ends it on the next request. Read fresh, not from the key cache.
    current = await gateway.accounts.key_fingerprint(account_id)
    if current is None or not hmac.compare_digest(current.encode(), signed_with.encode()):
        sign_out(request)  # the account is gone or its key was replaced
        return None
    try:
        summary = await gateway.balance(Account(account_id, None, 0, ""))
        # The account as authentication reads it (limits, lifetime spend for the discount).
        account = await gateway.accounts.by_email(summary["email"])
    except GpubridgeError:
        sign_out(request)  # the account is gone
        return None
    return account, summary
