"""Routes that replace an account's API key: email recovery and regeneration."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gpubridge.errors import InvalidInput, Unauthorized
from gpubridge.http_api.requests import bearer_key, gateway_of, json_object
from gpubridge.payments.recovery import Recovery

NOTICE_SENT = (
    "If an account exists for this email, we sent it a message with recovery instructions."
)
RESET_MAIL_SENT = (
    "If an account exists for this email, we sent it a one-time recovery token. Send it back "
    'with {"email", "token"} to this endpoint to receive a new API key.'
)
NEW_KEY = "Store this API key now: it is shown only once. The previous key no longer works."


def recovery_of(request: Request) -> Recovery:
    recovery: Recovery = request.app.state.recovery
    return recovery


def _strings(body: dict[str, Any], *names: str) -> None:
    violations = [
        {"path": name, "message": "not a string"}
        for name in names
        if name in body and not isinstance(body[name], str)
    ]
    if violations:
        raise InvalidInput("invalid request body", violations=violations)


async def recover(request: Request) -> Response:
    body = await json_object(request, {"email"}, {"email"})
    _strings(body, "email")
    await recovery_of(request).request_notice(body["email"])
    return JSONResponse({"ok": True, "message": NOTICE_SENT})


async def recover_reset(request: Request) -> Response:
    body = await json_object(request, {"email", "token"}, {"email"})
    _strings(body, "email", "token")
    recovery = recovery_of(request)
    if body.get("token") is None:
        await recovery.request_token(body["email"])
        return JSONResponse({"ok": True, "message": RESET_MAIL_SENT})
    recovered = await recovery.redeem(body["email"], body["token"])
    return JSONResponse(
        {
            "api_key": recovered.api_key,
            "account_id": recovered.account_id,
            "email": recovered.email,
            "message": NEW_KEY,
        }
    )


async def regenerate_key(request: Request) -> Response:
    current_key = bearer_key(request)
    if current_key is None:
        raise Unauthorized(
            "this endpoint needs the current API key: Authorization: Bearer gpub_...",
            code="missing_api_key",
        )
    account, api_key = await gateway_of(request).accounts.regenerate_key(current_key)
    return JSONResponse(
        {"api_key": api_key, "account_id": account.id, "email": account.email, "message": NEW_KEY}
    )
