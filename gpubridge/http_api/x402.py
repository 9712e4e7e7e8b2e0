"""x402 at the HTTP door: the payment headers in, the 402 challenge and the settlement receipt
out, and the wallet claim route. The payment logic lives in ``gpubridge.payments.x402``."""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gpubridge.errors import InvalidInput
from gpubridge.http_api.requests import gateway_of, json_object
from gpubridge.payments.x402 import Accepted, RequestBinding, SettlementPending, X402Required
from gpubridge.payments.x402.codec import (
    PAYMENT_REQUIRED,
    PAYMENT_RESPONSE,
    X_PAYMENT_RESPONSE,
    encode_json,
)


def payment_of(request: Request) -> str | None:
    """The payment a request carries: ``PAYMENT-SIGNATURE`` (v2) or ``X-PAYMENT`` (v1)."""
    return request.headers.get("payment-signature") or request.headers.get("x-payment")


def server_url(request: Request) -> str:
    """This server's base URL as clients see it (the public URL when configured)."""
    return gateway_of(request).settings.public_url or str(request.base_url).rstrip("/")


def resource_of(request: Request) -> str:
    return server_url(request) + request.url.path


async def binding_of(request: Request) -> RequestBinding:
    """What a tx-hash payment's signature binds to: method, path and body digest."""
    body = await request.body()
    return RequestBinding(request.method, request.url.path, hashlib.sha256(body).hexdigest())


def sign_in_of(request: Request) -> str | None:
    """The wallet's ``SIGN-IN-WITH-X`` header (a returning payer spending its credit)."""
    return request.headers.get("sign-in-with-x")


def receipt_headers(payment: Accepted | None) -> dict[str, str]:
    """``PAYMENT-RESPONSE`` (v2) or ``X-PAYMENT-RESPONSE`` (v1) for a settled payment; none
    when the wallet signed in instead of paying."""
    if payment is None:
        return {}
    return {payment.response_header: encode_json(payment.receipt)}


async def x402_required(request: Request, exc: Exception) -> Response:
    """402 with the requirements: v2 in ``PAYMENT-REQUIRED``, v1 (and v2) in the body."""
    assert isinstance(exc, X402Required)
    headers = {PAYMENT_REQUIRED: encode_json(exc.payment_required), "Cache-Control": "no-store"}
    return JSONResponse(exc.body, status_code=402, headers=headers)


async def settlement_pending(request: Request, exc: Exception) -> Response:
    """202: the settlement was sent but not confirmed in time; the body names the job the
    request gets once it is, and the receipt says ``settlement_pending``."""
    assert isinstance(exc, SettlementPending)
    header = PAYMENT_RESPONSE if exc.version == 2 else X_PAYMENT_RESPONSE
    body = {**exc.details, "message": exc.message}
    return JSONResponse(body, status_code=202, headers={header: encode_json(exc.receipt)})


async def claim_wallet(request: Request) -> Response:
    """``POST /account/wallet/claim``: an API key for a wallet account, against a signed
    claim message."""
    fields = {"address", "message", "signature"}
    body = await json_object(request, fields, fields)
    wrong = [name for name in sorted(fields) if not isinstance(body[name], str)]
    if wrong:
        raise InvalidInput(
            "address, message and signature must be strings",
            violations=[{"path": name, "message": "not a string"} for name in wrong],
        )
    gateway = gateway_of(request)
    claimed = await gateway.claim_wallet(
        body["address"], body["message"], body["signature"], server=server_url(request)
    )
    summary = await gateway.balance(claimed.account)
    return JSONResponse(
        {
            "api_key": claimed.api_key,
            "account_id": claimed.account.id,
            "address": claimed.address,
            "balance": summary["balance"],
            "message": "Store this API key now: it is shown only once.",
        },
        status_code=201,
    )
