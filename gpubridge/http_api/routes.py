"""HTTP routes: thin adapters from requests to gateway use cases."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gpubridge.errors import BadRequest, InvalidInput, NotFound
from gpubridge.gateway import job_view, service_summary
from gpubridge.gateway.discovery import run_describer
from gpubridge.gateway.metrics import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from gpubridge.http_api import account_keys, crypto_topups, discovery, topups
from gpubridge.http_api.dashboard import dashboard_routes
from gpubridge.http_api.openai_compat import openai_routes
from gpubridge.http_api.openapi import openapi_document
from gpubridge.http_api.requests import (
    account_or_x402,
    gateway_of,
    idempotency_key_of,
    int_param,
    json_object,
    priority_of,
    require_account,
)
from gpubridge.http_api.worker_socket import worker_routes
from gpubridge.http_api.x402 import (
    binding_of,
    claim_wallet,
    payment_of,
    receipt_headers,
    resource_of,
    server_url,
    sign_in_of,
)
from gpubridge.jsontext import InvalidJSON, parse_json
from gpubridge.money import micros_to_usd, usd_limit_to_micros


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 once the models that load at start (the starter profile's) are warm, else 503."""
    warmup = gateway_of(request).warmup
    return JSONResponse(warmup.view(), status_code=200 if warmup.ready else 503)


async def catalog(request: Request) -> Response:
    gateway = gateway_of(request)
    reports = await gateway.availability.reports()
    services = [service_summary(s, reports[s.key]) for s in gateway.catalog.services.values()]
    return JSONResponse({"services": services, "payments": gateway.payment_rails.view()})


async def estimate(request: Request) -> Response:
    service = request.query_params.get("service")
    if not service:
        raise InvalidInput(
            "the service query parameter is required",
            violations=[{"path": "service", "message": "required"}],
        )
    seconds: float | None = None
    if "seconds" in request.query_params:
        try:
            seconds = float(request.query_params["seconds"])
        except ValueError:
            seconds = -1
        if not 0 < seconds <= 86_400:
            raise InvalidInput(
                "seconds must be a number between 0 and 86400",
                violations=[{"path": "seconds", "message": "out of range"}],
            )
    payload: dict[str, Any] | None = None
    if "input" in request.query_params:
        try:
            payload = parse_json(request.query_params["input"])
        except InvalidJSON as exc:
            raise BadRequest(f"input must be a JSON object: {exc}", code="invalid_json") from None
    return JSONResponse(gateway_of(request).estimate(service, seconds=seconds, payload=payload))


async def register(request: Request) -> Response:
    body = await json_object(request, {"email"}, {"email"})
    if not isinstance(body["email"], str):
        raise InvalidInput(
            "email must be a string", violations=[{"path": "email", "message": "not a string"}]
        )
    created = await gateway_of(request).accounts.register(body["email"])
    return JSONResponse(
        {
            "api_key": created.api_key,
            "account_id": created.account.id,
            "email": created.account.email,
            "balance": 0.0,
            "webhook_secret": created.account.webhook_secret,
            "message": "Store this API key now: it is shown only once.",
        },
        status_code=201,
    )


async def balance(request: Request) -> Response:
    account = await require_account(request)
    return JSONResponse(await gateway_of(request).balance(account))


async def webhook_secret(request: Request) -> Response:
    account = await require_account(request)
    return JSONResponse({"webhook_secret": account.webhook_secret})


async def account_jobs(request: Request) -> Response:
    account = await require_account(request)
    limit = int_param(request, "limit", 50, 1, 500)
    offset = int_param(request, "offset", 0, 0, 10_000_000)
    gateway = gateway_of(request)
    jobs, total = await gateway.list_jobs(account, limit, offset)
    return JSONResponse(
        {
            "jobs": [job_view(j, gateway.settings.public_url) for j in jobs],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )


async def spending_limit(request: Request) -> Response:
    account = await require_account(request)
    body = await json_object(request, {"daily_limit"}, {"daily_limit"})
    value = body["daily_limit"]
    try:
        micros = usd_limit_to_micros(value)
    except ValueError:
        raise InvalidInput(
            "daily_limit must be a number of USD",
            violations=[{"path": "daily_limit", "message": "not a number"}],
        ) from None
    gateway = gateway_of(request)
    await gateway.accounts.set_daily_limit(account, micros)
    return JSONResponse({"daily_limit": micros_to_usd(micros)})


async def run(request: Request) -> Response:
    gateway = gateway_of(request)
    # No API key: pay with x402 when it is on (the payment, or the 402 asking for one, comes
    # after the body is validated, so invalid input is still a 422 first).
    account = await account_or_x402(request)
    body = await json_object(request, {"service", "input", "webhook_url"}, {"service", "input"})
    violations = []
    if not isinstance(body["service"], str):
        violations.append({"path": "service", "message": "must be a string"})
    if not isinstance(body["input"], dict):
        violations.append({"path": "input", "message": "must be an object"})
    webhook_url = body.get("webhook_url")
    if webhook_url is not None and not isinstance(webhook_url, str):
        violations.append({"path": "webhook_url", "message": "must be a string"})
    if violations:
        raise InvalidInput("invalid request body", violations=violations)
    priority = priority_of(request)
    key = idempotency_key_of(request)

    headers: dict[str, str] = {}
    paid = None
    if account is None:
        paid = await gateway.submit_paid(
            payment_of(request),
            body["service"],
            body["input"],
            resource=resource_of(request),
            binding=await binding_of(request),
            webhook_url=webhook_url,
            idempotency_key=key,
            priority=priority,
            describe=run_describer(server_url(request)),
            sign_in=sign_in_of(request),
        )
        submitted, headers = paid.submitted, receipt_headers(paid.payment)
    else:
        submitted = await gateway.submit(
            account,
            body["service"],
            body["input"],
            webhook_url=webhook_url,
            idempotency_key=key,
            priority=priority,
        )
    job = submitted.job
    service = gateway.catalog.service(job.service)
    if service.mode == "sync" and not job.status.is_terminal:
        job = await gateway.wait_to_answer(
            job, gateway.settings.sync_wait_s, unseen=submitted.unseen
        )
    if job.status.is_terminal:
        if paid is not None and paid.payment is not None and paid.payment.metered:
            headers = receipt_headers((await gateway.finish_metered(paid)).payment)
        return JSONResponse(
            job_view(job, gateway.settings.public_url), status_code=200, headers=headers
        )
    return JSONResponse(
        {
            "job_id": job.id,
            "service": job.service,
            "status": job.status.value,
            "status_url": f"{gateway.settings.public_url}/status/{job.id}",
            "estimated_cost_usd": micros_to_usd(job.hold_micros),
        },
        status_code=202,
        headers=headers,
    )


async def status(request: Request) -> Response:
    gateway = gateway_of(request)
    job_id = request.path_params["job_id"]
    try:
        job = await gateway.get(job_id)
    except NotFound:
        # A paid request waiting for its settlement has its job id before its job.
        pending = await gateway.pending_view(job_id)
        if pending is None:
            raise
        return JSONResponse(pending)
    return JSONResponse(job_view(job, gateway.settings.public_url))


async def file(request: Request) -> Response:
    """An output file of a job (image, audio, video) until it expires with the job's results."""
    stored, data = await gateway_of(request).file(request.path_params["file_id"])
    return Response(
        data,
        media_type=stored.content_type,
        headers={
            "Cache-Control": "private, max-age=3600",
            "Content-Disposition": f'inline; filename="{stored.id}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


async def cancel(request: Request) -> Response:
    account = await require_account(request)
    gateway = gateway_of(request)
    job = await gateway.cancel(account, request.path_params["job_id"])
    return JSONResponse(job_view(job, gateway.settings.public_url))


async def stream(request: Request) -> Response:
    gateway = gateway_of(request)
    job_id = request.path_params["job_id"]
    await gateway.get(job_id)  # 404/expired before the stream starts

    async def events() -> Any:
        async for item in gateway.stream(job_id):
            yield {"event": item["event"], "data": json.dumps(item["data"])}

    from sse_starlette.sse import EventSourceResponse  # loaded by the first stream

    return EventSourceResponse(events(), ping=15)


async def metrics(request: Request) -> Response:
    return Response(gateway_of(request).runner.metrics.render(), media_type=METRICS_CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    gateway = gateway_of(request)
    return JSONResponse(openapi_document(gateway.catalog, x402=gateway.x402 is not None))


def build_routes() -> list[BaseRoute]:
    # Starlette tries routes in order, a regular expression each (about half a microsecond):
    # the paid paths come first. No two routes here match the same path, so the order decides
    # nothing else.
    return [
        Route("/healthz", healthz),
        Route("/run", run, methods=["POST"]),
        *openai_routes(),
        Route("/readyz", readyz),
        Route("/openapi.json", openapi),
        Route(discovery.LLMS_TXT, discovery.llms),
        Route(discovery.WELL_KNOWN_X402, discovery.well_known_x402),
        Route("/metrics", metrics),
        Route("/catalog", catalog),
        Route("/catalog/estimate", estimate),
        Route("/account/register", register, methods=["POST"]),
        Route("/account/recover", account_keys.recover, methods=["POST"]),
        Route("/account/recover-reset", account_keys.recover_reset, methods=["POST"]),
        Route("/account/regenerate-key", account_keys.regenerate_key, methods=["POST"]),
        Route("/account/balance", balance),
        Route("/account/webhook-secret", webhook_secret),
        Route("/account/jobs", account_jobs),
        Route("/account/spending-limit", spending_limit, methods=["POST"]),
        Route("/account/wallet/claim", claim_wallet, methods=["POST"]),
        Route("/account/topup", topups.topup, methods=["POST"]),
        Route("/account/auto-topup", topups.auto_topup, methods=["GET", "POST"]),
        Route("/account/topup-crypto", crypto_topups.create_invoice, methods=["POST"]),
        Route("/account/topup-crypto/confirm", crypto_topups.confirm, methods=["POST"]),
        Route("/account/topup-crypto/{invoice_id}", crypto_topups.invoice_status),
        Route("/webhooks/stripe", topups.stripe_webhook, methods=["POST"]),
        Route("/status/{job_id}", status),
        Route("/status/{job_id}/stream", stream),
        Route("/cancel/{job_id}", cancel, methods=["POST"]),
        Route("/files/{file_id}", file),
        *dashboard_routes(),
        *worker_routes(),
    ]
