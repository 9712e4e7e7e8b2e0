"""The account dashboard: sign in with email + API key; see balance, spending and jobs; top up,
set limits, replace the API key; try services in the playground (``dashboard_playground``).
Server-rendered; the session lives in a signed cookie (``dashboard_session``)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gpubridge.errors import GpubridgeError
from gpubridge.gateway import Gateway
from gpubridge.http_api.dashboard_charts import spending_chart
from gpubridge.http_api.dashboard_pages import job_row, render, usd
from gpubridge.http_api.dashboard_playground import playground_routes
from gpubridge.http_api.dashboard_session import (
    NO_STORE,
    PATH,
    Form,
    back,
    csrf,
    forbidden,
    html,
    notices,
    session_middleware,
    sign_out,
    signed_in,
    url_form,
)
from gpubridge.http_api.requests import gateway_of, int_param
from gpubridge.money import usd_to_micros
from gpubridge.payments.accounts import Account, fingerprint, hash_key, normalize_email
from gpubridge.payments.auto_topup import threshold_micros
from gpubridge.payments.packages import package_named

__all__ = ["MAX_FORM_BYTES", "PATH", "dashboard_routes", "session_middleware"]

JOBS_PER_PAGE = 20
MAX_FORM_BYTES = 16 * 1024
"""The largest form body; ``bodylimit.BodyLimitMiddleware`` refuses bigger ones as they arrive."""
SIGN_IN_FAILED = "Sign-in failed: check the email and the API key."
KEY_MISMATCH = "That is not the current API key of this account."

Handler = Callable[[Request, Gateway, Account, Form], Awaitable[Response]]


async def dashboard(request: Request) -> Response:
    gateway = gateway_of(request)
    token = csrf(request)
    shown = notices(request)
    session = await signed_in(request, gateway)
    if session is None:
        return html(render("sign_in", csrf=token, **shown))
    account, summary = session
    return await _account_page(request, gateway, account, summary, token, **shown)


async def _account_page(
    request: Request,
    gateway: Gateway,
    account: Account,
    summary: dict[str, Any],
    token: str,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    offset = int_param(request, "offset", 0, 0, 10_000_000)
    jobs, total = await gateway.list_jobs(account, JOBS_PER_PAGE, offset)
    auto = await gateway.card_topups.auto.view(account.id)
    usage = await gateway.usage(account)
    page = render(
        "account",
        csrf=token,
        section="account",
        balance=summary,
        auto=auto,
        usage=usage,
        usage_total=usd(usage.total_micros),
        usage_rows=[{**vars(s), "spent": usd(s.spent_micros)} for s in usage.services],
        chart=spending_chart(usage),
        jobs=[job_row(j) for j in jobs],
        total=total,
        offset=offset,
        prev_offset=max(0, offset - JOBS_PER_PAGE),
        **extra,
    )
    return html(page, status_code)


def _open_session(request: Request, account_id: str, api_key: str) -> None:
    request.session.clear()  # a fresh session (and CSRF token) on every sign-in
    request.session.update(
        {
            "account_id": account_id,
            "key_generation": fingerprint(hash_key(api_key)),
            "csrf": secrets.token_urlsafe(32),
        }
    )


async def sign_in(request: Request) -> Response:
    form = await url_form(request)
    if form is None:
        return forbidden()
    gateway = gateway_of(request)
    api_key = form.get("api_key", "").strip()
    try:
        account = await gateway.accounts.authenticate(api_key)
        email = normalize_email(form.get("email", ""))
    except GpubridgeError:
        account, email = None, ""
    if account is None or not hmac.compare_digest((account.email or "").encode(), email.encode()):
        sign_out(request)
        return html(render("sign_in", csrf=csrf(request), error=SIGN_IN_FAILED), 401)
    _open_session(request, account.id, api_key)
    return back(request)


async def sign_out_form(request: Request) -> Response:
    if await url_form(request) is None:
        return forbidden()
    request.session.clear()
    return back(request, notice="Signed out.")


def _account_action(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A POST that needs the CSRF token and a signed-in account; domain errors are shown."""

    async def endpoint(request: Request) -> Response:
        form = await url_form(request)
        if form is None:
            return forbidden()
        gateway = gateway_of(request)
        session = await signed_in(request, gateway)
        if session is None:
            return back(request, error="Please sign in again.")
        try:
            return await handler(request, gateway, session[0], form)
        except GpubridgeError as exc:
            return back(request, error=exc.message)

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
    return await _account_page(request, gateway, account, summary, csrf(request), invoice=invoice)


async def _daily_limit(
    request: Request, gateway: Gateway, account: Account, form: Form
) -> Response:
    try:
        micros = usd_to_micros(form.get("daily_limit", "").strip())
    except ValueError:
        return back(request, error="The daily limit must be a number of USD.")
    await gateway.accounts.set_daily_limit(account, micros)
    return back(request, notice="Daily limit saved.")


async def _auto_topup(request: Request, gateway: Gateway, account: Account, form: Form) -> Response:
    enabled = form.get("enabled") == "1"
    threshold = threshold_micros(form["threshold"]) if form.get("threshold") else None
    package = package_named(form["package"]) if form.get("package") else None
    await gateway.card_topups.auto.configure(
        account.id, enabled=enabled, threshold=threshold, package=package
    )
    return back(request, notice=f"Auto top-up is {'on' if enabled else 'off'}.")


async def _rotate_key(request: Request, gateway: Gateway, account: Account, form: Form) -> Response:
    """Replace the API key (the current one, typed again, proves it is its owner at the
    keyboard); the new key is shown on this one page and never again. This session moves to
    the new key; every other session and the old key end."""
    current = form.get("current_key", "").strip()
    try:
        owner = await gateway.accounts.authenticate(current)
    except GpubridgeError:
        owner = None
    if owner is None or owner.id != account.id:
        return back(request, error=KEY_MISMATCH)
    _, new_key = await gateway.accounts.regenerate_key(current)
    _open_session(request, account.id, new_key)
    summary = await gateway.balance(account)
    return await _account_page(request, gateway, account, summary, csrf(request), new_key=new_key)


def dashboard_routes() -> list[BaseRoute]:
    return [
        Route(PATH, dashboard),
        Route(f"{PATH}/sign-in", sign_in, methods=["POST"]),
        Route(f"{PATH}/sign-out", sign_out_form, methods=["POST"]),
        Route(f"{PATH}/topup", _account_action(_card_topup), methods=["POST"]),
        Route(f"{PATH}/topup-crypto", _account_action(_crypto_topup), methods=["POST"]),
        Route(f"{PATH}/daily-limit", _account_action(_daily_limit), methods=["POST"]),
        Route(f"{PATH}/auto-topup", _account_action(_auto_topup), methods=["POST"]),
        Route(f"{PATH}/rotate-key", _account_action(_rotate_key), methods=["POST"]),
        *playground_routes(),
        Mount(
            f"{PATH}/static",
            StaticFiles(packages=[("gpubridge.http_api", "static")]),
            name="dashboard-static",
        ),
    ]
