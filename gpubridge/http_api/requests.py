"""Reading requests: JSON bodies, bearer keys, query parameters."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from gpubridge.errors import BadRequest, InvalidInput, Unauthorized
from gpubridge.gateway import Gateway
from gpubridge.jsontext import InvalidJSON, parse_json
from gpubridge.payments.accounts import Account

PRIORITIES = {"fast", "cheap"}


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def body_object(request: Request) -> dict[str, Any]:
    """The request body parsed as a JSON object; 400 otherwise. (Its size and the time it
    takes to arrive are capped as it is read, by ``bodylimit.BodyLimitMiddleware``.)"""
    raw = await request.body()
    try:
        body = parse_json(raw) if raw else None
    except InvalidJSON as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_json")
    return body


async def json_object(request: Request, allowed: set[str], required: set[str]) -> dict[str, Any]:
    """The request body as a JSON object with only ``allowed`` keys and all ``required`` ones."""
    body = await body_object(request)
    violations = [
        {"path": key, "message": "unknown field"} for key in sorted(set(body) - allowed)
    ] + [
        {"path": key, "message": "required field is missing"}
        for key in sorted(required - set(body))
    ]
    if violations:
        summary = "; ".join(f"{v['path']}: {v['message']}" for v in violations)
        raise InvalidInput(f"invalid request body: {summary}", violations=violations)
    return body


def bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Authorization must be 'Bearer gpub_...'", code="invalid_api_key")
    return value.strip()


GET_A_KEY = "get one with POST /account/register"


async def require_account(request: Request) -> Account:
    key = bearer_key(request)
    if key is None:
        raise Unauthorized(
            f"this endpoint needs an API key: Authorization: Bearer gpub_... ({GET_A_KEY})",
            code="missing_api_key",
        )
    return await gateway_of(request).accounts.authenticate(key)


async def account_or_x402(request: Request) -> Account | None:
    """Who pays for a paid request: the API key's account, or None when there is no key and
    x402 pays instead. Without a key while x402 is off: 401 saying how to get a key."""
    key = bearer_key(request)
    if key is not None:
        return await gateway_of(request).accounts.authenticate(key)
    if gateway_of(request).x402 is not None:
        return None
    raise Unauthorized(
        "this request needs an API key: Authorization: Bearer gpub_... "
        f"({GET_A_KEY}); this server does not take x402 payments",
        code="missing_api_key",
    )


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(
            f"{name} must be an integer", violations=[{"path": name, "message": "not an integer"}]
        ) from None
    if not low <= value <= high:
        raise InvalidInput(
            f"{name} must be between {low} and {high}",
            violations=[{"path": name, "message": f"out of range {low}..{high}"}],
        )
    return value


def priority_of(request: Request) -> str | None:
    """The ``X-Priority`` header: ``fast``, ``cheap`` or none."""
    priority = request.headers.get("x-priority")
    if priority is not None and priority not in PRIORITIES:
        raise BadRequest("X-Priority must be 'fast' or 'cheap'", code="invalid_priority")
    return priority


def idempotency_key_of(request: Request) -> str | None:
    """The ``Idempotency-Key`` header, 1 to 255 characters, if any."""
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise BadRequest(
            "Idempotency-Key must be 1 to 255 characters", code="invalid_idempotency_key"
        )
    return key
