"""The OpenAPI document, with each service's input schema taken from the catalog."""

from __future__ import annotations

from typing import Any

from gpubridge import __version__
from gpubridge.catalog import Catalog
from gpubridge.http_api.openai_openapi import OPENAI_ERROR, openai_paths
from gpubridge.payments.packages import PACKAGES

ERROR = {"$ref": "#/components/schemas/Error"}
BEARER: list[dict[str, list[str]]] = [{"apiKey": []}]
PACKAGE_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["package"],
    "properties": {"package": {"enum": list(PACKAGES)}},
}


_EMAIL_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["email"],
    "properties": {"email": {"type": "string", "format": "email"}},
}


def _op(
    summary: str,
    *,
    auth: bool = False,
    body: dict[str, Any] | None = None,
    responses: dict[str, str] | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            code: {
                "description": text,
                "content": {"application/json": {"schema": ERROR if int(code) >= 400 else {}}},
            }
            for code, text in (responses or {"200": "OK"}).items()
        },
    }
    if auth:
        operation["security"] = BEARER
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


def openapi_document(catalog: Catalog) -> dict[str, Any]:
    run_variants = [
        {
            "title": key,
            "type": "object",
            "additionalProperties": False,
            "required": ["service", "input"],
            "properties": {
                "service": {"const": key},
                "input": service.input_schema,
                "webhook_url": {"type": "string", "format": "uri"},
            },
        }
        for key, service in catalog.services.items()
    ]
    job = {"$ref": "#/components/schemas/Job"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "gpubridge", "version": __version__},
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
                "Job": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "status": {
                            "enum": ["pending", "running", "completed", "failed", "cancelled"]
                        },
                        "output": {"type": ["object", "null"]},
                        "execution_time_seconds": {"type": ["number", "null"]},
                        "estimated_cost_usd": {"type": "number"},
                        "cost_usd": {"type": ["number", "null"]},
                    },
                },
                "RunRequest": {"oneOf": run_variants},
                "OpenAIError": OPENAI_ERROR,
            },
        },
        "paths": {
            "/healthz": {"get": _op("Liveness")},
            "/catalog": {
                "get": _op(
                    "Services, models, prices and input schemas, and the payment methods "
                    "offered (payments: API key, x402, card and USDC top-ups)"
                )
            },
            "/catalog/estimate": {
                "get": _op(
                    "Estimate a job's cost",
                    params=[
                        _query("service", {"type": "string"}, required=True),
                        _query("seconds", {"type": "number"}),
                        _query("input", {"type": "string", "description": "JSON input"}),
                    ],
                    responses={"200": "Estimate", "404": "Unknown service", "422": "Bad input"},
                )
            },
            "/account/register": {
                "post": _op(
                    "Create an account; the API key is shown once",
                    body={
                        "type": "object",
                        "required": ["email"],
                        "properties": {"email": {"type": "string", "format": "email"}},
                    },
                    responses={"201": "Created", "409": "Email taken", "400": "Bad email"},
                )
            },
            "/account/recover": {
                "post": _op(
                    "Mail the owner of an email, if any, that an account exists",
                    body=_EMAIL_BODY,
                    responses={"200": "The same answer for every address", "429": "Too many"},
                )
            },
            "/account/recover-reset": {
                "post": _op(
                    "Email only: mail a one-time token. Email and token: a new API key",
                    body={
                        "type": "object",
                        "required": ["email"],
                        "properties": {
                            "email": {"type": "string", "format": "email"},
                            "token": {"type": "string"},
                        },
                    },
                    responses={
                        "200": "Token mailed (same answer for every address), or the new key",
                        "400": "Invalid, expired or used token",
                        "429": "Too many",
                    },
                )
            },
            "/account/regenerate-key": {
                "post": _op("A new API key; the current one stops working", auth=True)
            },
            "/account/balance": {"get": _op("Balance, daily spend and discount tier", auth=True)},
            "/account/jobs": {
                "get": _op(
                    "Job history",
                    auth=True,
                    params=[
                        _query("limit", {"type": "integer"}),
                        _query("offset", {"type": "integer"}),
                    ],
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
                        "properties": {"daily_limit": {"type": "number"}},
                    },
                )
            },
            "/account/topup": {
                "post": _op(
                    "Buy a credit package by card: a Stripe Checkout URL",
                    auth=True,
                    body=PACKAGE_BODY,
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
                            "threshold": {"type": "number", "minimum": 1, "maximum": 10000},
                            "package": {"enum": list(PACKAGES)},
                        },
                    },
                    responses={"200": "Saved", "409": "No saved card", "422": "Bad input"},
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
                    },
                    responses={
                        "200": "Invoice paid",
                        "409": "Transaction already used",
                        "422": "Transaction does not pay an open invoice (yet)",
                        "503": "Chain unreachable or not configured",
                    },
                )
            },
            "/account/topup-crypto/{invoice_id}": {
                "get": _op(
                    "A USDC invoice and its status (open, paid, expired)",
                    auth=True,
                    params=[_path("invoice_id")],
                    responses={"200": "Invoice", "404": "No such invoice"},
                )
            },
            "/webhooks/stripe": {
                "post": _op(
                    "Stripe events, verified by the Stripe-Signature header",
                    responses={"200": "Received", "400": "Bad signature"},
                )
            },
            "/run": {
                "post": {
                    **_op(
                        "Submit a job",
                        auth=True,
                        body={"$ref": "#/components/schemas/RunRequest"},
                        responses={
                            "200": "Completed (sync services)",
                            "202": "Accepted",
                            "401": "Invalid API key, or no API key while x402 is off",
                            "402": (
                                "No API key while x402 is on: the payment requirements; "
                                "or insufficient credits or daily limit reached"
                            ),
                            "409": "Idempotency-Key reused with another body",
                            "422": "Input does not match the service schema",
                            "503": "Service has no backend",
                        },
                        params=[
                            {
                                "name": "X-Priority",
                                "in": "header",
                                "schema": {"enum": ["fast", "cheap"]},
                            },
                            {
                                "name": "Idempotency-Key",
                                "in": "header",
                                "schema": {"type": "string"},
                            },
                        ],
                    ),
                }
            },
            "/status/{job_id}": {
                "get": {
                    **_op(
                        "Job status and output",
                        responses={"200": "Job", "404": "Unknown or expired"},
                    ),
                    "parameters": [_path("job_id")],
                }
            },
            "/status/{job_id}/stream": {
                "get": {
                    **_op("Server-sent events: status, progress, tokens"),
                    "parameters": [_path("job_id")],
                }
            },
            "/files/{file_id}": {
                "get": {
                    **_op(
                        "A job's output file (image, audio, video), kept as long as its results",
                        responses={"200": "The file's bytes", "404": "Unknown or expired"},
                    ),
                    "parameters": [_path("file_id")],
                }
            },
            "/cancel/{job_id}": {
                "post": {
                    **_op(
                        "Cancel a job and refund it",
                        auth=True,
                        responses={"200": "Cancelled", "409": "Already finished"},
                    ),
                    "parameters": [_path("job_id")],
                }
            },
            **openai_paths(catalog),
        },
        "x-job-schema": job,
    }
