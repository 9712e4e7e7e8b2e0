"""What every OpenAI-compatible route shares: reading its body, picking the catalog model, and
taking one job through the gateway (API key or x402, hold, charge) to its end."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import anyio
from starlette.requests import Request

from gpubridge.catalog import Service
from gpubridge.engines.base import MediaInput
from gpubridge.errors import BadRequest, Conflict, InvalidInput, NotFound
from gpubridge.gateway.discovery import Describe
from gpubridge.gateway.paid_intake import PaidSubmission
from gpubridge.http_api.openai_errors import JobEnded
from gpubridge.http_api.requests import (
    account_or_x402,
    body_object,
    gateway_of,
    idempotency_key_of,
    priority_of,
)
from gpubridge.http_api.x402 import (
    binding_of,
    payment_of,
    receipt_headers,
    resource_of,
    sign_in_of,
)
from gpubridge.jobs.status import JobStatus
from gpubridge.jobs.store import JobRecord
from gpubridge.payments.accounts import Account
from gpubridge.suggest import did_you_mean

JOB_HEADER = "X-Gpubridge-Job-Id"
QUEUE_GRACE_S = 30.0
"""Waited beyond the job time limit, for a job still queued behind others."""

MODEL_ALIASES: dict[str, frozenset[str]] = {
    "embedding-l4": frozenset(
        {"text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"}
    ),
    "whisper-l4": frozenset({"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"}),
    "tts-l4": frozenset({"tts-1", "tts-1-hd", "gpt-4o-mini-tts"}),
    "image-4090": frozenset({"dall-e-2", "dall-e-3", "gpt-image-1"}),
}
"""OpenAI model names that mean the service's default model (clients often hard-code them)."""

_INPUT_ERROR_CODES = {"invalid_input", "invalid_media", "unsupported_media", "media_too_large"}


def violation(param: str, message: str, suggestion: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"path": param, "message": message}
    if suggestion is not None:
        found["suggestion"] = suggestion
    return {"violations": [found]}


def unsupported(param: str, message: str) -> BadRequest:
    """A 400 for a parameter (or value) these routes do not support."""
    return BadRequest(message, code="unsupported_parameter", **violation(param, message))


def invalid(param: str, message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_value", **violation(param, message))


async def read_json(
    request: Request,
    *,
    allowed: set[str],
    required: set[str],
    ignored: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The JSON object body; unknown fields are a 400 as at OpenAI, ``ignored`` ones dropped."""
    body = await body_object(request)
    return checked_fields(body, allowed=allowed, required=required, ignored=ignored)


def checked_fields(
    body: dict[str, Any], *, allowed: set[str], required: set[str], ignored: frozenset[str]
) -> dict[str, Any]:
    """``body`` without ``ignored`` fields and nulls; 400 for an unknown or missing one."""
    unknown = sorted(set(body) - allowed - ignored)
    if unknown:
        hint, suggestion = did_you_mean(unknown[0], allowed)
        raise BadRequest(
            f"Unrecognized request argument supplied: {unknown[0]}{hint}",
            code="unknown_parameter",
            **violation(unknown[0], f"unknown parameter{hint}", suggestion),
        )
    missing = sorted(required - {k for k, v in body.items() if v is not None})
    if missing:
        raise BadRequest(
            f"you must provide a {missing[0]} parameter",
            code="missing_required_parameter",
            **violation(missing[0], "required"),
        )
    return {k: v for k, v in body.items() if k not in ignored and v is not None}


def model_for(service: Service, requested: Any) -> str | None:
    """The catalog model id to put in the job input (None: the service's default)."""
    if requested is None:
        return None
    if not isinstance(requested, str):
        raise invalid("model", "model must be a string")
    if service.model(requested) is not None:
        return requested
    if requested in MODEL_ALIASES.get(service.key, ()):
        return None
    ids = [m.id for m in service.models]
    hint, suggestion = did_you_mean(requested, [*ids, *sorted(MODEL_ALIASES.get(service.key, ()))])
    raise NotFound(
        f"The model `{requested}` does not exist on this server for {service.key}{hint}; "
        f"choose one of {ids} (GET /v1/models lists them)",
        code="model_not_found",
        **violation("model", f"unknown model{hint}", suggestion),
    )


def created_of(job: JobRecord) -> int:
    """The job's creation time in Unix seconds (OpenAI's ``created``)."""
    created = job.created_at
    return int((created if created.tzinfo else created.replace(tzinfo=UTC)).timestamp())


@dataclass(frozen=True)
class Door:
    """A submitted job, the account it is charged to, and the headers its answer carries."""

    job: JobRecord
    account: Account
    headers: dict[str, str]
    created: bool
    """False when an Idempotency-Key returned an earlier job."""
    paid: PaidSubmission | None = None
    """The x402 submission, when the job was paid without a key."""
    unseen: bool = False
    """Its id is shown to no one before the answer (``Submitted.unseen``)."""


async def caller(request: Request) -> Account | None:
    """The API key's account, or None when there is no key and x402 pays instead (401 when
    x402 is off)."""
    return await account_or_x402(request)


async def submit(
    request: Request,
    account: Account | None,
    service_key: str,
    payload: dict[str, Any],
    *,
    media: Mapping[str, MediaInput] | None = None,
) -> Door:
    """Submit the job like ``POST /run``: held on the account, or paid with x402 (402 with the
    requirements when no payment comes with the request)."""
    gateway = gateway_of(request)
    priority = priority_of(request)
    key = idempotency_key_of(request)
    paid: PaidSubmission | None = None
    if account is None:
        paid = await gateway.submit_paid(
            payment_of(request),
            service_key,
            payload,
            resource=resource_of(request),
            binding=await binding_of(request),
            idempotency_key=key,
            priority=priority,
            media=media,
            describe=_describer(request),
            sign_in=sign_in_of(request),
        )
        submitted, account = paid.submitted, paid.account
        headers = receipt_headers(paid.payment)
    else:
        submitted = await gateway.submit(
            account, service_key, payload, idempotency_key=key, priority=priority, media=media
        )
        headers = {}
    job = submitted.job
    headers = {**headers, JOB_HEADER: job.id}
    return Door(job, account, headers, submitted.created, paid, submitted.unseen)


def _describer(request: Request) -> Describe:
    """The Bazaar description of this route for its 402. (Imported here: the OpenAPI document
    it reads imports every route module, this one included.)"""
    from gpubridge.http_api.openai_discovery import openai_describer

    return openai_describer(gateway_of(request).catalog, request.url.path)


async def finish(request: Request, door: Door) -> JobRecord:
    """Wait for the job to end; the completed job, or ``JobEnded`` for any other ending.

    OpenAI clients cannot poll, so this waits up to the job time limit (plus queueing). A job
    still unfinished then is cancelled and refunded, and the answer is a 504 that tells the
    client not to retry on its own.
    """
    gateway = gateway_of(request)
    job = door.job
    limit = gateway.settings.job_timeout_s + QUEUE_GRACE_S
    timed_out = False
    if not job.status.is_terminal:
        waited = await _wait_while_connected(request, door, limit)
        if waited is None:
            await gateway.abandon(door.account, job.id)
            raise JobEnded(
                499,
                "client_closed_request",
                f"the client went away; job {job.id} was cancelled and refunded",
                headers=door.headers,
            )
        job = waited
    if not job.status.is_terminal:
        try:
            job = await gateway.cancel(door.account, job.id)
            timed_out = True
        except Conflict:
            job = await gateway.get(job.id)  # it ended in the meantime
    await _settle_metered(request, door)
    if job.status == JobStatus.COMPLETED:
        return job
    if timed_out:
        raise JobEnded(
            504,
            "timeout",
            f"job {job.id} did not finish within {limit:g} s; it was cancelled and refunded",
            headers={**door.headers, "x-should-retry": "false"},
        )
    raise job_error(job, door.headers)


async def _settle_metered(request: Request, door: Door) -> None:
    """A metered x402 payment settled for what the ended job used, its receipt in the
    answer's headers."""
    paid = door.paid
    if paid is None or paid.payment is None or not paid.payment.metered:
        return
    settled = await gateway_of(request).finish_metered(paid)
    door.headers.update(receipt_headers(settled.payment))


async def _wait_while_connected(request: Request, door: Door, limit: float) -> JobRecord | None:
    """The job once it ends or ``limit`` passes; None if the client disconnects first."""
    gateway = gateway_of(request)
    waited: list[JobRecord] = []
    async with anyio.create_task_group() as group:

        async def wait() -> None:
            waited.append(await gateway.wait_to_answer(door.job, limit, unseen=door.unseen))
            group.cancel_scope.cancel()

        async def watch() -> None:
            await until_disconnected(request)
            group.cancel_scope.cancel()

        group.start_soon(wait)
        group.start_soon(watch)
    return waited[0] if waited else None


async def until_disconnected(request: Request) -> None:
    """Return once the client has gone away (its body already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def job_error(job: JobRecord, headers: Mapping[str, str]) -> JobEnded:
    """The error answering a failed or cancelled job (which was refunded in full)."""
    error = dict(job.error or {})
    code = str(error.pop("code", job.status.value))
    message = str(error.pop("message", f"the job ended {job.status.value}"))
    if job.status == JobStatus.CANCELLED:
        status = 409
    elif code == "timeout":
        status = 504
        headers = {**headers, "x-should-retry": "false"}
    elif code in _INPUT_ERROR_CODES or "violations" in error:
        status = 422
    else:
        status = 502
    return JobEnded(
        status,
        code,
        f"job {job.id} {job.status.value} and was refunded: {message}",
        headers=headers,
        **{k: v for k, v in error.items() if k == "violations"},
    )
