"""What many operations of the OpenAPI document share: the error bodies (gpubridge's, OpenAI's
and x402's challenge) and the answers every route of a kind can give, such as 401 on a keyed
route or 400/408/413 on one that reads a body. Each route names what it adds of its own."""

from __future__ import annotations

from typing import Any

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
OPENAI_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code", "param"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        }
    },
}
X402_CHALLENGE: dict[str, Any] = {
    "type": "object",
    "description": "x402 version 1 payment requirements; the version 2 object (also in the "
    "PAYMENT-REQUIRED header) under paymentRequired",
    "required": ["x402Version", "error", "accepts"],
    "properties": {
        "x402Version": {"const": 1},
        "error": {"type": "string"},
        "message": {"type": "string"},
        "accepts": {"type": "array", "items": {"type": "object"}},
        "paymentRequired": {"type": "object"},
    },
}
SCHEMAS = {"Error": ERROR, "OpenAIError": OPENAI_ERROR, "X402PaymentRequired": X402_CHALLENGE}

_REF = {
    False: {"$ref": "#/components/schemas/Error"},
    True: {"$ref": "#/components/schemas/OpenAIError"},
}
_X402_REF = {"$ref": "#/components/schemas/X402PaymentRequired"}

UNAUTHORIZED = "Missing or invalid API key"
BAD_JSON = "The body is not a JSON object (code invalid_json)"
TOO_LARGE = "The body is larger than this route takes (code payload_too_large)"
TOO_SLOW = "The body did not arrive in time (code request_timeout)"
INVALID = "A field is unknown, missing or of the wrong type or range (code invalid_input)"
RATE_LIMITED = "Too many requests (Retry-After says when to try again)"


def shared_errors(
    *, auth: bool = False, body: bool = False, limited: bool = True
) -> dict[str, str]:
    """The errors any route of this kind answers: 401 with a key, 400/408/413/422 with a body
    it reads, 429 where the rate limits count."""
    errors: dict[str, str] = {}
    if body:
        errors |= {"400": BAD_JSON, "408": TOO_SLOW, "413": TOO_LARGE, "422": INVALID}
    if auth:
        errors["401"] = UNAUTHORIZED
    if limited:
        errors["429"] = RATE_LIMITED
    return errors


def error_response(
    code: str, description: str, *, openai: bool = False, x402: bool = False
) -> dict[str, Any]:
    """One documented error: its body is the error object of the route's style, and a 402 on
    a route that x402 pays is x402's challenge or (credits, daily limit) the error object."""
    schema: dict[str, Any] = _REF[openai]
    if code == "402" and x402:
        schema = {"anyOf": [_X402_REF, schema]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_responses(
    errors: dict[str, str], *, openai: bool = False, x402: bool = False
) -> dict[str, Any]:
    return {
        code: error_response(code, text, openai=openai, x402=x402)
        for code, text in sorted(errors.items())
    }


def security(*, x402: bool) -> list[dict[str, list[str]]]:
    """A paid route's security: the API key, or (x402 on) none, when the payment header pays."""
    return [{"apiKey": []}, {}] if x402 else [{"apiKey": []}]


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (the ``/v1`` routes take a null field as an absent one)."""
    return {"anyOf": [schema, {"type": "null"}]}
