"""USDC top-up routes: invoices with an exact amount, their status, and confirming a transfer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gpubridge.http_api.requests import gateway_of, json_object, require_account


async def create_invoice(request: Request) -> Response:
    account = await require_account(request)
    body = await json_object(request, {"package"}, {"package"})
    invoice = await gateway_of(request).crypto_topups.create_invoice(account.id, body["package"])
    return JSONResponse(invoice)


async def invoice_status(request: Request) -> Response:
    account = await require_account(request)
    invoice_id = str(request.path_params["invoice_id"])
    return JSONResponse(await gateway_of(request).crypto_topups.view(account.id, invoice_id))


async def confirm(request: Request) -> Response:
    account = await require_account(request)
    body = await json_object(request, {"txHash"}, {"txHash"})
    invoice = await gateway_of(request).crypto_topups.confirm(account.id, body["txHash"])
    return JSONResponse(invoice)
