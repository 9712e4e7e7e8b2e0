"""Who is calling a tool: their API key, the x402 payment they sent, where links should point."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from gpubridge.errors import Unauthorized

X402_PAYMENT_META_KEY = "x402/payment"
X402_PAYMENT_RESPONSE_META_KEY = "x402/payment-response"


@dataclass(frozen=True)
class Caller:
    api_key: str | None
    """From ``Authorization: Bearer`` over HTTP; the configured key over stdio."""
    base_url: str
    """Prefix of the links in results (the public URL, or the URL the request came to)."""
    payment: Any = None
    """The x402 payment payload from ``_meta["x402/payment"]``, when the call carries one."""


def caller_of(
    request: object,
    meta: Mapping[str, Any] | None,
    *,
    local_api_key: str | None,
    public_url: str,
) -> Caller:
    """The caller of one tool call.

    Over HTTP only the request's own bearer key counts, never the server's configured key,
    so an anonymous caller cannot spend the operator's credits.
    """
    if isinstance(request, Request):
        api_key = bearer_key(request.headers.get("authorization"))
        base_url = public_url or str(request.base_url).rstrip("/")
    else:
        api_key = local_api_key
        base_url = public_url
    payment = (meta or {}).get(X402_PAYMENT_META_KEY)
    return Caller(api_key=api_key, base_url=base_url.rstrip("/"), payment=payment)


def bearer_key(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header; None when there is no header."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Authorization must be 'Bearer gpub_...'", code="invalid_api_key")
    return value.strip()
