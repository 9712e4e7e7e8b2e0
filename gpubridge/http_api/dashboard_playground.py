"""The dashboard's playground: a form for any service drawn from its input schema, run as a
paid job of the signed-in account (the gateway's ``submit``, as ``POST /run``), and the job's
page, which follows the job's event stream when scripts run and shows its result."""

from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gpubridge.errors import GpubridgeError, InvalidInput, NotFound
from gpubridge.gateway import Gateway, job_view
from gpubridge.gateway.views import price_text
from gpubridge.http_api.dashboard_pages import error_parts, output_view, render, short_id, usd
from gpubridge.http_api.dashboard_session import (
    PATH,
    back,
    csrf,
    csrf_ok,
    forbidden,
    html,
    notices,
    signed_in,
)
from gpubridge.http_api.playground_forms import (
    curl_command,
    example_input,
    form_fields,
    read_input,
)
from gpubridge.http_api.requests import gateway_of
from gpubridge.http_api.x402 import server_url
from gpubridge.ids import random_uuid
from gpubridge.jobs.store import JobRecord

PLAYGROUND_PATH = f"{PATH}/playground"
JOBS_PATH = f"{PATH}/jobs"
FIRST_SERVICE = "llm-4090"
RUN_ID = re.compile(r"^[0-9a-f-]{36}$")
"""Each rendered form carries a fresh run id, sent as the job's Idempotency-Key: a form sent
twice (a double click, a reload that posts again) runs and charges once."""


def _service_key(gateway: Gateway, wanted: str | None) -> str:
    services = gateway.catalog.services
    if wanted in services:
        return str(wanted)
    return FIRST_SERVICE if FIRST_SERVICE in services else next(iter(services))


def _service_choices(gateway: Gateway) -> list[dict[str, str]]:
    return [
        {"key": s.key, "name": s.name, "category": s.category}
        for s in gateway.catalog.services.values()
    ]


async def _form_page(
    request: Request,
    gateway: Gateway,
    key: str,
    *,
    values: dict[str, Any] | None = None,
    violations: list[dict[str, Any]] | None = None,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    service = gateway.catalog.service(key)
    report = (await gateway.availability.reports())[key]
    return html(
        render(
            "playground",
            csrf=csrf(request),
            section="playground",
            services=_service_choices(gateway),
            service=service,
            available=report.verdict.available,
            unavailable_reason=report.verdict.reason,
            fields=form_fields(service.input_schema),
            values=values or {},
            violations={str(v.get("path", "")): v.get("message", "") for v in violations or []},
            price=price_text(service.price),
            # The example's curl; the page's script rewrites it as the form is filled in.
            curl=curl_command(server_url(request), key, example_input(service.input_schema)),
            run_url=f"{server_url(request)}/run",
            run_id=random_uuid(),
            **extra,
        ),
        status_code,
    )


async def playground(request: Request) -> Response:
    gateway = gateway_of(request)
    if await signed_in(request, gateway) is None:
        return back(request, error="Please sign in to use the playground.")
    key = _service_key(gateway, request.query_params.get("service"))
    return await _form_page(request, gateway, key, **notices(request))


async def run_in_playground(request: Request) -> Response:
    gateway = gateway_of(request)
    key = request.path_params["service"]
    if key not in gateway.catalog.services:
        return back(request, error=f"No service {key}.", to=PLAYGROUND_PATH)
    async with request.form() as form:
        if not csrf_ok(request, str(form.get("csrf_token", ""))):
            return forbidden()
        session = await signed_in(request, gateway)
        if session is None:
            return back(request, error="Please sign in again.")
        account = session[0]
        schema = gateway.catalog.service(key).input_schema
        values = _values(form)
        try:
            payload, media = await read_input(schema, form)
            submitted = await gateway.submit(
                account, key, payload, media=media or None, idempotency_key=_run_key(form)
            )
        except InvalidInput as exc:
            found = exc.details.get("violations") or []
            return await _form_page(
                request,
                gateway,
                key,
                values=values,
                violations=found,
                status_code=422,
                error=exc.message,
            )
        except GpubridgeError as exc:
            return await _form_page(
                request, gateway, key, values=values, status_code=exc.status, error=exc.message
            )
    return back(request, to=f"{JOBS_PATH}/{submitted.job.id}")


def _values(form: FormData) -> dict[str, Any]:
    """What the form held (text fields only), to show it again beside its errors."""
    hidden = {"csrf_token", "run_id"}
    return {k: v for k, v in form.multi_items() if isinstance(v, str) and k not in hidden}


def _run_key(form: FormData) -> str | None:
    run_id = form.get("run_id")
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        return None  # an older page: it runs, without protection against a second send
    return f"playground-{run_id}"


async def _own_job(gateway: Gateway, account_id: str, job_id: str) -> JobRecord:
    job = await gateway.get(job_id)
    if job.account_id != account_id:
        raise NotFound(f"no job {job_id}", code="job_not_found")
    return job


async def job_page(request: Request) -> Response:
    gateway = gateway_of(request)
    session = await signed_in(request, gateway)
    if session is None:
        return back(request, error="Please sign in to see this job.")
    account, _ = session
    try:
        job = await _own_job(gateway, account.id, request.path_params["job_id"])
    except GpubridgeError as exc:
        return back(request, error=exc.message)
    code, summary, detail = error_parts(job.error)
    view = job_view(job, gateway.settings.public_url)
    return html(
        render(
            "job",
            csrf=csrf(request),
            section="playground",
            job=job,
            view=view,
            short_id=short_id(job.id),
            terminal=job.status.is_terminal,
            output=output_view(job.output) if job.output is not None else None,
            error_code=code,
            error_summary=summary,
            error_detail=detail,
            cost=usd(job.cost_micros),
            hold=usd(job.hold_micros),
            curl=curl_command(server_url(request), job.service, job.input),
            **notices(request),
        )
    )


def playground_routes() -> list[BaseRoute]:
    return [
        Route(PLAYGROUND_PATH, playground),
        Route(f"{PLAYGROUND_PATH}/{{service}}", run_in_playground, methods=["POST"]),
        Route(f"{JOBS_PATH}/{{job_id}}", job_page),
    ]
