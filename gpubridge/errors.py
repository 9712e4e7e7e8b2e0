"""Domain errors shared by every layer.

Each error carries a machine-readable ``code`` and a human ``message``; the front doors map
them to transport errors in one place (HTTP status + JSON body, MCP ``isError`` result).
"""

from __future__ import annotations

from typing import Any


class GpubridgeError(Exception):
    """Base of all domain errors."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.details)
        return body


class BadRequest(GpubridgeError):
    code = "bad_request"
    status = 400


class InvalidInput(GpubridgeError):
    """Input does not match the service's JSON Schema (lists every violation)."""

    code = "invalid_input"
    status = 422


class Unauthorized(GpubridgeError):
    code = "unauthorized"
    status = 401


class Forbidden(GpubridgeError):
    code = "forbidden"
    status = 403


class NotFound(GpubridgeError):
    code = "not_found"
    status = 404


class Expired(GpubridgeError):
    code = "expired"
    status = 404


class RequestTimeout(GpubridgeError):
    """The client took longer than allowed to send its request."""

    code = "request_timeout"
    status = 408


class Conflict(GpubridgeError):
    code = "conflict"
    status = 409


class PayloadTooLarge(GpubridgeError):
    """A request body larger than its route accepts."""

    code = "payload_too_large"
    status = 413


class PaymentRequired(GpubridgeError):
    code = "payment_required"
    status = 402


class InsufficientCredits(PaymentRequired):
    code = "insufficient_credits"


class SpendingLimitExceeded(PaymentRequired):
    code = "daily_limit_exceeded"


class NegativeBalance(InsufficientCredits):
    """The balance is below zero (a card payment was refunded or disputed after its credits
    were spent): no paid work starts until a top-up brings it back."""

    code = "negative_balance"


class ServiceUnavailable(GpubridgeError):
    code = "service_unavailable"
    status = 503


class BackendError(GpubridgeError):
    """A backend failed to serve a job (the router may fail over to the next)."""

    code = "backend_error"
    status = 502


class ConfigurationError(GpubridgeError):
    """The operator's configuration (settings, catalog) is invalid; the server refuses to start."""

    code = "configuration_error"
    status = 500


class RateLimited(GpubridgeError):
    """Too many requests; ``retry_after`` is whole seconds until the next one may pass."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = max(1, retry_after)
        self.details["retry_after"] = self.retry_after
