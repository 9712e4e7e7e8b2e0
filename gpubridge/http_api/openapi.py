"""The OpenAPI document, with each service's input schema taken from the catalog. It says what
this server answers as configured: with x402 on, a paid route takes no API key and answers 402
with x402's payment requirements."""

from __future__ import annotations

from typing import Any

from gpubridge import __version__
from gpubridge.catalog import Catalog
from gpubridge.catalog.portable import portable_schema
from gpubridge.http_api.discovery_openapi import discovery_paths
from gpubridge.http_api.openai_openapi import HEADERS, openai_paths
from gpubridge.http_api.openapi_common import (
    SCHEMAS,
    error_response,
    error_responses,
    nullable,
    security,
    shared_errors,
)
from gpubridge.payments.packages import PACKAGES

BEARER: list[dict[str, list[str]]] = [{"apiKey": []}]
PACKAGE_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["package"],
    "properties": {"package": {"enum": list(PACKAGES)}},
    "additionalProperties": False,
}
EMAIL: dict[str, Any] = {"type": "string", "format": "email", "maxLength": 320}
_EMAIL_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["email"],
    "properties": {"email": EMAIL},
    "additionalProperties": False,
}
ANY_JSON: dict[str, Any] = {"type": "object"}


USD_1_TO_10000: dict[str, Any] = {
    "description": "USD, $1 to $10,000: a JSON number, or the same number as a string",
    "anyOf": [
        {"type": "number", "minimum": 1, "maximum": 10_000},
        {"type": "string", "pattern": "^([1-9][0-9]{0,3}(\\.[0-9]{1,6})?|10000(\\.0{1,6})?)$"},
    ],
}


def _op(
    summary: str,
    *,
    auth: bool = False,
    body: dict[str, Any] | None = None,
    responses: dict[str, str] | None = None,
    params: list[dict[str, Any]] | None = None,
    answer: dict[str, Any] | None = None,
    limited: bool = True,
    security_: list[dict[str, list[str]]] | None = None,
) -> dict[str, Any]:
    """An operation: its own answers, plus those every route of its kind gives (401 with a key,
    400/408/413/422 with a body, 429 under the rate limits)."""
    own = responses or {"200": "OK"}
    errors = shared_errors(auth=auth, body=body is not None, limited=limited)
    errors |= {code: text for code, text in own.items() if int(code) >= 400}
    answers = {
        code: {
            "description": text,
            "content": {"application/json": {"schema": answer or ANY_JSON}},
        }
        for code, text in own.items()
        if int(code) < 400
    }
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {**answers, **error_responses(errors)},
    }
    if auth:
        operation["security"] = security_ or BEARER
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if params:
        operation["parameters"] = params
    return operation


def _query(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document(catalog: Catalog, *, x402: bool = False) -> dict[str, Any]:
    """The document of this server: ``x402`` says whether it takes x402 payments."""
    run_variants = [
        {
            "title": key,
            "type": "object",
            "additionalProperties": False,
            "required": ["service", "input"],
            "properties": {
                "service": {"const": key},
                "input": portable_schema(service.input_schema),
                "webhook_url": nullable({"type": "string", "format": "uri"}),
            },
        }
        for key, service in catalog.services.items()
    ]
    job = {"$ref": "#/components/schemas/Job"}
    paid = security(x402=x402)
    run_errors = {
        "400": "The body is not a JSON object, or a bad Idempotency-Key or X-Priority header",
        "402": (
            "No API key while x402 is on: the payment requirements; "
            "or insufficient credits or daily limit reached"
            if x402
            else "Insufficient credits or daily limit reached"
        ),
        "404": "Unknown service",
        "409": "Idempotency-Key reused with another body",
        "422": "Input does not match the service schema",
        "503": (
            "Service has no backend, its runtime is not installed, its model is not downloaded "
            "(offline), or the object store cannot take its media inputs"
        ),
    }
    if x402:
        run_errors["403"] = "The x402 payer is refused"
    run = _op(
        "Submit a job",
        auth=True,
        body={"$ref": "#/components/schemas/RunRequest"},
        responses={"200": "Completed (sync services)", "202": "Accepted", **run_errors},
        params=HEADERS,
        security_=paid,
    )
    run["responses"]["402"] = error_response("402", run_errors["402"], x402=x402)
    job_id = [_path("job_id")]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gpubridge",
            "version": __version__,
            "description": (
                "Integer fields take JSON integers only: a number written with a fraction "
                "part, even `8000.0`, is refused with 422 `invalid_input` (JSON Schema would "
                "count it as an integer), so that no float reaches a hold or a runtime."
            ),
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **SCHEMAS,
                "Job": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "status": {
                            "enum": ["pending", "running", "completed", "failed", "cancelled"]
                        },
                        "output": nullable({"type": "object"}),
                        "execution_time_seconds": nullable({"type": "number"}),
                        "estimated_cost_usd": {"type": "number"},
                        "cost_usd": nullable({"type": "number"}),
                    },
                },
                "RunRequest": {"oneOf": run_variants},
            },
        },
        "paths": {
            "/healthz": {"get": _op("Liveness", limited=False)},
            "/readyz": {
                "get": _op(
                    "Readiness: the models loaded at start are warm (503 until then)", limited=False
                )
            },
            "/openapi.json": {"get": _op("This document")},
            **discovery_paths(),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/catalog": {
                "get": _op(
                    "Services, models, prices and input schemas, whether each can run here now "
                    "(available, unavailable_reason), and the payment methods offered "
                    "(payments: API key, x402, card and USDC top-ups)"
                )
            },
            "/catalog/estimate": {
                "get": _op(
                    "Estimate a job's cost",
                    params=[
                        _query("service", {"type": "string", "minLength": 1}, required=True),
                        _query(
                            "seconds",
                            {"type": "number", "exclusiveMinimum": 0, "maximum": 86_400},
                        ),
                        {
                            "name": "input",
                            "in": "query",
                            "description": "The job input, as JSON",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                    ],
                    responses={
                        "200": "Estimate",
                        "400": "input is not a JSON object (code invalid_json)",
                        "404": "Unknown service",
                        "422": "Bad input",
                    },
                )
            },
            "/account/register": {
                "post": _op(
                    "Create an account; the API key is shown once",
                    body=_EMAIL_BODY,
                    responses={"201": "Created", "409": "Email taken", "400": "Bad email"},
                )
            },
            "/account/recover": {
                "post": _op(
                    "Mail the owner of an email, if any, that an account exists",
                    body=_EMAIL_BODY,
                    responses={"200": "The same answer for every address", "400": "Bad email"},
                )
            },
            "/account/recover-reset": {
                "post": _op(
                    "Email only: mail a one-time token. Email and token: a new API key",
                    body={
                        "type": "object",
                        "required": ["email"],
                        "properties": {"email": EMAIL, "token": {"type": "string"}},
                        "additionalProperties": False,
                    },
                    responses={
                        "200": "Token mailed (same answer for every address), or the new key",
                        "400": "Bad email; or an invalid, expired or used token",
                    },
                )
            },
            "/account/regenerate-key": {
                "post": _op("A new API key; the current one stops working", auth=True)
            },
            "/account/wallet/claim": {
                "post": _op(
                    "An API key for the account of an x402 wallet, against a signed claim",
                    body={
                        "type": "object",
                        "required": ["address", "message", "signature"],
                        "properties": {
                            "address": {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"},
                            "message": {"type": "string"},
                            "signature": {"type": "string"},
                        },
                        "additionalProperties": False,
                    },
                    responses={
                        "201": "Claimed",
                        "400": "Not an address, or a claim for another server or too old",
                        "401": "The signature does not prove the wallet",
                        "404": "No payments from this wallet yet",
                        "409": "Claimed by another request at the same time",
                    },
                )
            },
            "/account/balance": {"get": _op("Balance, daily spend and discount tier", auth=True)},
            "/account/jobs": {
                "get": _op(
                    "Job history",
                    auth=True,
                    params=[
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                        _query("offset", {"type": "integer", "minimum": 0, "maximum": 10_000_000}),
                    ],
                    responses={"200": "OK", "422": "limit or offset out of range"},
                )
            },
            "/account/webhook-secret": {"get": _op("The secret that signs webhooks", auth=True)},
            "/account/spending-limit": {
                "post": _op(
                    "Set the daily spending limit ($1 to $10,000)",
                    auth=True,
                    body={
                        "type": "object",
                        "required": ["daily_limit"],
                        "properties": {"daily_limit": USD_1_TO_10000},
                        "additionalProperties": False,
                    },
                    responses={"200": "OK", "400": "Out of range ($1 to $10,000)"},
                )
            },
            "/account/topup": {
                "post": _op(
                    "Buy a credit package by card: a Stripe Checkout URL",
                    auth=True,
                    body=PACKAGE_BODY,
                    params=[
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        }
                    ],
                    responses={
                        "200": "Checkout session",
                        "422": "Unknown package",
                        "502": "Stripe error",
                        "503": "Card payments not configured",
                    },
                )
            },
            "/account/auto-topup": {
                "get": _op("Auto top-up settings and last attempts", auth=True),
                "post": _op(
                    "Buy a package by saved card when the balance falls below a threshold",
                    auth=True,
                    body={
                        "type": "object",
                        "required": ["enabled"],
                        "properties": {
                            "enabled": {"type": "boolean"},
                            "threshold": USD_1_TO_10000,
                            "package": {"enum": list(PACKAGES)},
                        },
                        "additionalProperties": False,
                    },
                    responses={
                        "200": "Saved",
                        "409": "No saved card",
                        "422": "Bad input",
                        "503": "Card payments not configured",
                    },
                ),
            },
            "/account/topup-crypto": {
                "post": _op(
                    "Buy a credit package with USDC: an invoice with the exact amount to send",
                    auth=True,
                    body=PACKAGE_BODY,
                    responses={
                        "200": "Invoice",
                        "422": "Unknown package",
                        "503": "USDC top-ups not configured",
                    },
                )
            },
            "/account/topup-crypto/confirm": {
                "post": _op(
                    "Credit an open invoice now from the transaction that paid it",
                    auth=True,
                    body={
                        "type": "object",
                        "required": ["txHash"],
                        "properties": {
                            "txHash": {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"}
                        },
                        "additionalProperties": False,
                    },
                    responses={
                        "200": "Invoice paid",
                        "409": "Transaction already used",
                        "422": "Transaction does not pay an open invoice (yet)",
                        "503": "Chain unreachable or USDC top-ups not configured",
                    },
                )
            },
            "/account/topup-crypto/{invoice_id}": {
                "get": _op(
                    "A USDC invoice and its status (open, paid, expired)",
                    auth=True,
                    params=[_path("invoice_id")],
                    responses={
                        "200": "Invoice",
                        "404": "No such invoice",
                        "503": "USDC top-ups not configured",
                    },
                )
            },
            "/webhooks/stripe": {
                "post": {
                    **_op(
                        "Stripe events, verified by the Stripe-Signature header",
                        limited=False,
                        responses={
                            "200": "Received",
                            "400": "Bad signature or payload",
                            "408": shared_errors(body=True)["408"],
                            "413": shared_errors(body=True)["413"],
                            "503": "Card payments not configured",
                        },
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {}}},
                    },
                }
            },
            "/run": {"post": run},
            "/status/{job_id}": {
                "get": _op(
                    "Job status and output",
                    params=job_id,
                    responses={"200": "Job", "404": "Unknown or expired"},
                    answer=job,
                )
            },
            "/status/{job_id}/stream": {
                "get": {
                    "summary": "Server-sent events: status, progress, tokens",
                    "parameters": job_id,
                    "responses": {
                        "200": {
                            "description": "The event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **error_responses({"404": "Unknown or expired"} | shared_errors()),
                    },
                }
            },
            "/files/{file_id}": {
                "get": {
                    "summary": "A job's output file (image, audio, video), kept as long as its "
                    "results",
                    "parameters": [_path("file_id")],
                    "responses": {
                        "200": {
                            "description": "The file's bytes",
                            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        **error_responses(
                            {
                                "404": "Unknown or expired",
                                "503": "The object store is unreachable or refuses this server",
                            }
                            | shared_errors()
                        ),
                    },
                }
            },
            "/cancel/{job_id}": {
                "post": _op(
                    "Cancel a job and refund it",
                    auth=True,
                    params=job_id,
                    responses={
                        "200": "Cancelled",
                        "404": "Unknown job, or another account's",
                        "409": "Already finished",
                    },
                    answer=job,
                )
            },
            **openai_paths(catalog, x402=x402),
        },
        "x-job-schema": job,
    }
