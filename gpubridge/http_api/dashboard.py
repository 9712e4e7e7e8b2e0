"""The account dashboard: sign in with email + API key, see balance and jobs, top up, set
limits. Server-rendered; a signed session cookie holds the account id, a fingerprint of the key
it was opened with (the session ends when that key is replaced) and a CSRF token."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gpubridge.errors import GpubridgeError
from gpubridge.gateway import Gateway
from gpubridge.http_api.dashboard_pages import job_row, render
from gpubridge.http_api.requests import gateway_of, int_param
from gpubridge.money import usd_to_micros
from gpubridge.payments.accounts import Account, fingerprint, hash_key, normalize_email
from gpubridge.payments.auto_topup import threshold_micros
from gpubridge.payments.packages import package_named
from gpubridge.settings import Settings

log = logging.getLogger(__name__)

PATH = "/account/dashboard"
JOBS_PER_PAGE = 20
SESSION_MAX_AGE_S = 12 * 3600
MAX_FORM_BYTES = 16 * 1024
"""The largest form body; ``bodylimit.BodyLimitMiddleware`` refuses bigger ones as they arrive."""
SIGN_IN_FAILED = "Sign-in failed: check the email and the API key."
NO_STORE = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}

Form = dict[str, str]
Handler = Callable[[Request, Gateway, Account, Form], Awaitable[Response]]


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
        SessionMiddleware,
        secret_key=secret,
        session_cookie="gpubridge_dashboard",
        max_age=SESSION_MAX_AGE_S,
        path=PATH,
        same_site="lax",
        https_only=settings.public_url.startswith("https://"),
    )


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def _form(request: Request) -> Form | None:
    """The url-encoded form, or None when its CSRF token is missing or wrong."""
    raw = await request.body()
    form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    expected = request.session.get("csrf")
    given = form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(), given.encode()):
        return None
    return form


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=NO_STORE)


def _forbidden() -> Response:
    return PlainTextResponse(
        "Forbidden: the form's security token is missing or wrong; reload the page.",
        status_code=403,
        headers=NO_STORE,
    )


def _back(request: Request, *, notice: str | None = None, error: str | None = None) -> Response:
    if notice:
        request.session["notice"] = notice
    if error:
        request.session["error"] = error
    return RedirectResponse(PATH, status_code=303, headers=NO_STORE)


def _sign_out(request: Request) -> None:
    request.session.pop("account_id", None)
    request.session.pop("key_generation", None)


async def _signed_in(request: Request, gateway: Gateway) -> tuple[Account, dict[str, Any]] | None:
    account_id = request.session.get("account_id")
    signed_with = request.session.get("key_generation")
    if not isinstance(account_id, str) or not isinstance(signed_with, str):
        _sign_out(request)
        return None
    # A session lasts only as long as the key it was opened with: rotation or recovery (on
    # any replica) ends it on the next request. Read fresh, not from the key cache.
    current = await gateway.accounts.key_fingerprint(account_id)
    if current is None or not hmac.compare_digest(current.encode(), signed_with.encode()):
        _sign_out(request)  # the account is gone or its key was replaced
        return None
    # The gateway's account use cases read only the id (and the email for Stripe) of this
    # record; the summary read here is fresh, not the key cache's copy.
    try:
        summary = await gateway.balance(Account(account_id, None, 0, ""))
    except GpubridgeError:
        _sign_out(request)  # the account is gone
        return None
    return Account(account_id, summary["email"], 0, ""), summary


async def dashboard(request: Request) -> Response:
    gateway = gateway_of(request)
    csrf = _csrf(request)
    notices = {"notice": request.session.pop("notice", None)}
    notices["error"] = request.session.pop("error", None)
    signed_in = await _signed_in(request, gateway)
    if signed_in is None:
        return _html(render("sign_in", csrf=csrf, **notices))
    account, summary = signed_in
    return await _account_page(request, gateway, account, summary, csrf, **notices)


async def _account_page(
    request: Request,
    gateway: Gateway,
    account: Account,
    summary: dict[str, Any],
    csrf: str,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    offset = int_param(request, "offset", 0, 0, 10_000_000)
    jobs, total = await gateway.list_jobs(account, JOBS_PER_PAGE, offset)
    auto = await gateway.card_topups.auto.view(account.id)
    page = render(
        "account",
        csrf=csrf,
        balance=summary,
        auto=auto,
        jobs=[job_row(j) for j in jobs],
        total=total,
        offset=offset,
        prev_offset=max(0, offset - JOBS_PER_PAGE),
        **extra,
    )
    return _html(page, status_code)


async def sign_in(request: Request) -> Response:
    form = await _form(request)
    if form is None:
        return _forbidden()
    gateway = gateway_of(request)
    api_key = form.get("api_key", "").strip()
    try:
        account = await gateway.accounts.authenticate(api_key)
        email = normalize_email(form.get("email", ""))
    except GpubridgeError:
        account, email = None, ""
    if account is None or not hmac.compare_digest((account.email or "").encode(), email.encode()):
        _sign_out(request)
        return _html(render("sign_in", csrf=_csrf(request), error=SIGN_IN_FAILED), 401)
    request.session.clear()  # a fresh session (and CSRF token) on every sign-in
    request.session.update(
        {
            "account_id": account.id,
            "key_generation": fingerprint(hash_key(api_key)),
            "csrf": secrets.token_urlsafe(32),
        }
    )
    return _back(request)


async def sign_out(request: Request) -> Response:
    if await _form(request) is None:
        return _forbidden()
    request.session.clear()
    return _back(request, notice="Signed out.")


def _account_action(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A POST that needs the CSRF token and a signed-in account; domain errors are shown."""

    async def endpoint(request: Request) -> Response:
        form = await _form(request)
        if form is None:
            return _forbidden()
        gateway = gateway_of(request)
        signed_in = await _signed_in(request, gateway)
        if signed_in is None:
            return _back(request, error="Please sign in again.")
        try:
            return await handler(request, gateway, signed_in[0], form)
        except GpubridgeError as exc:
            return _back(request, error=exc.message)

    return endpoint


async def _card_topup(request: Request, gateway: Gateway, account: Account, form: Form) -> Response:
    result = await gateway.card_topups.start_checkout(
        account.id, account.email, form.get("package")
    )
    return RedirectResponse(result["checkout_url"], status_code=303, headers=NO_STORE)


async def _crypto_topup(
    request: Request, gateway: Gateway, account: Account, form: Form
) -> Response:
    invoice = await gateway.crypto_topups.create_invoice(account.id, form.get("package"))
    summary = await gateway.balance(account)
    return await _account_page(request, gateway, account, summary, _csrf(request), invoice=invoice)


async def _daily_limit(
    request: Request, gateway: Gateway, account: Account, form: Form
) -> Response:
    try:
        micros = usd_to_micros(form.get("daily_limit", "").strip())
    except ValueError:
        return _back(request, error="The daily limit must be a number of USD.")
    await gateway.accounts.set_daily_limit(account, micros)
    return _back(request, notice="Daily limit saved.")


async def _auto_topup(request: Request, gateway: Gateway, account: Account, form: Form) -> Response:
    enabled = form.get("enabled") == "1"
    threshold = threshold_micros(form["threshold"]) if form.get("threshold") else None
    package = package_named(form["package"]) if form.get("package") else None
    await gateway.card_topups.auto.configure(
        account.id, enabled=enabled, threshold=threshold, package=package
    )
    return _back(request, notice=f"Auto top-up is {'on' if enabled else 'off'}.")


def dashboard_routes() -> list[BaseRoute]:
    return [
        Route(PATH, dashboard),
        Route(f"{PATH}/sign-in", sign_in, methods=["POST"]),
        Route(f"{PATH}/sign-out", sign_out, methods=["POST"]),
        Route(f"{PATH}/topup", _account_action(_card_topup), methods=["POST"]),
        Route(f"{PATH}/topup-crypto", _account_action(_crypto_topup), methods=["POST"]),
        Route(f"{PATH}/daily-limit", _account_action(_daily_limit), methods=["POST"]),
        Route(f"{PATH}/auto-topup", _account_action(_auto_topup), methods=["POST"]),
    ]
