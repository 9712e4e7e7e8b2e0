"""Card top-up routes: Checkout sessions, the Stripe webhook, auto top-up settings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gpubridge.errors import BadRequest, InvalidInput
from gpubridge.http_api.requests import gateway_of, json_object, require_account
from gpubridge.payments.auto_topup import threshold_micros
from gpubridge.payments.packages import package_named

MAX_IDEMPOTENCY_KEY = 200
MAX_WEBHOOK_BYTES = 1024 * 1024
"""The largest webhook body; ``bodylimit.BodyLimitMiddleware`` refuses bigger ones as they
arrive."""


async def topup(request: Request) -> Response:
    account = await require_account(request)
    body = await json_object(request, {"package"}, {"package"})
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise BadRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
            code="invalid_idempotency_key",
        )
    result = await gateway_of(request).card_topups.start_checkout(
        account.id, account.email, body["package"], key
    )
    return JSONResponse(result)


async def stripe_webhook(request: Request) -> Response:
    payload = await request.body()
    result = await gateway_of(request).card_topups.take_webhook(
        payload, request.headers.get("stripe-signature")
    )
    return JSONResponse(result)


async def auto_topup(request: Request) -> Response:
    account = await require_account(request)
    auto = gateway_of(request).card_topups.auto
    if request.method == "GET":
        return JSONResponse(await auto.view(account.id))
    body = await json_object(request, {"enabled", "threshold", "package"}, {"enabled"})
    if not isinstance(body["enabled"], bool):
        raise InvalidInput(
            "enabled must be true or false",
            violations=[{"path": "enabled", "message": "not a boolean"}],
        )
    threshold = threshold_micros(body["threshold"]) if "threshold" in body else None
    package = package_named(body["package"]) if "package" in body else None
    return JSONResponse(
        await auto.configure(
            account.id, enabled=body["enabled"], threshold=threshold, package=package
        )
    )
