"""A small local server that plays Stripe's API for the calls card top-ups make, and helpers
that build and sign webhook events exactly as Stripe does.

Served by uvicorn in a background thread on 127.0.0.1 at an ephemeral port; the real ``stripe``
library talks to it through ``StripeClient(base_addresses={"api": url})``. It records every
request (form fields flattened as Stripe encodes them, and the Idempotency-Key header), replays
the first answer for a repeated Idempotency-Key as Stripe does, and has knobs to decline
off-session charges or to fail Checkout.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import stripe
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

WEBHOOK_SECRET = "whsec_test_" + "a" * 32
SECRET_KEY = "sk_test_gpubridge"


@dataclass
class StripeBehaviour:
    """What the server does; tests change fields while it runs."""

    decline_payment_intents: bool = False
    intent_status: str = "succeeded"
    checkout_error_status: int | None = None
    default_payment_method: str | None = "pm_card_visa"
    saved_cards: list[str] = field(default_factory=lambda: ["pm_card_visa"])
    requests: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def calls(self, method: str, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def reset(self) -> None:
        fresh = StripeBehaviour()
        for name in fresh.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _error(status: int, kind: str, message: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"type": kind, "message": message, **extra}}


def build_app(behaviour: StripeBehaviour) -> Starlette:
    def customer(form: dict[str, str], cid: str | None = None) -> dict[str, Any]:
        return {
            "id": cid or _new_id("cus_"),
            "object": "customer",
            "email": form.get("email"),
            "metadata": {},
            "invoice_settings": {"default_payment_method": behaviour.default_payment_method},
            "livemode": False,
        }

    def checkout(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if behaviour.checkout_error_status is not None:
            return _error(behaviour.checkout_error_status, "api_error", "checkout is unavailable")
        sid = _new_id("cs_test_")
        amount = int(form["line_items[0][price_data][unit_amount]"]) * int(
            form.get("line_items[0][quantity]", "1")
        )
        return 200, {
            "id": sid,
            "object": "checkout.session",
            "mode": form.get("mode"),
            "url": f"https://checkout.stripe.com/c/pay/{sid}",
            "amount_total": amount,
            "currency": form.get("line_items[0][price_data][currency]"),
            "customer": form.get("customer"),
            "client_reference_id": form.get("client_reference_id"),
            "metadata": {
                k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")
            },
            "payment_status": "unpaid",
            "status": "open",
            "success_url": form.get("success_url"),
            "cancel_url": form.get("cancel_url"),
            "livemode": False,
        }

    def payment_intent(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        intent = {
            "id": _new_id("pi_"),
            "object": "payment_intent",
            "amount": int(form["amount"]),
            "amount_received": 0,
            "currency": form.get("currency"),
            "customer": form.get("customer"),
            "payment_method": form.get("payment_method"),
            "metadata": {
                k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")
            },
            "status": behaviour.intent_status,
            "livemode": False,
        }
        if behaviour.decline_payment_intents:
            intent["status"] = "requires_payment_method"
            return _error(
                402,
                "card_error",
                "Your card was declined.",
                code="card_declined",
                decline_code="generic_decline",
                payment_intent=intent,
            )
        if intent["status"] == "succeeded":
            intent["amount_received"] = intent["amount"]
        return 200, intent

    async def handle(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        path, method = request.url.path, request.method
        key = request.headers.get("idempotency-key")
        behaviour.requests.append(
            {
                "method": method,
                "path": path,
                "form": form,
                "query": dict(request.query_params),
                "idempotency_key": key,
                "authorization": request.headers.get("authorization"),
            }
        )
        if key and (method, key) in behaviour.replies:
            status, body = behaviour.replies[(method, key)]
            return JSONResponse(body, status_code=status, headers={"idempotent-replayed": "true"})
        if method == "POST" and path == "/v1/customers":
            status, body = 200, customer(form)
        elif method == "GET" and path.startswith("/v1/customers/"):
            status, body = 200, customer({}, path.rsplit("/", 1)[1])
        elif method == "POST" and path == "/v1/checkout/sessions":
            status, body = checkout(form)
        elif method == "GET" and path == "/v1/payment_methods":
            cards = [
                {"id": pm, "object": "payment_method", "type": "card"}
                for pm in behaviour.saved_cards
            ]
            status, body = 200, {"object": "list", "data": cards, "has_more": False, "url": path}
        elif method == "POST" and path == "/v1/payment_intents":
            status, body = payment_intent(form)
        else:
            status, body = _error(404, "invalid_request_error", f"no route {method} {path}")
        if key and method == "POST":
            behaviour.replies[(method, key)] = (status, body)
        return JSONResponse(body, status_code=status, headers={"request-id": _new_id("req_")})

    return Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST"])])


@dataclass
class StripeServer:
    url: str
    behaviour: StripeBehaviour


@contextmanager
def serve_stripe(behaviour: StripeBehaviour | None = None) -> Iterator[StripeServer]:
    """Serve the fake Stripe API on 127.0.0.1 at an ephemeral port until the block ends."""
    behaviour = behaviour or StripeBehaviour()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_app(behaviour), log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="stripe-server", daemon=True
    )
    thread.start()
    try:
        yield StripeServer(f"http://127.0.0.1:{port}", behaviour)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or _new_id("evt_"),
        "object": "event",
        "api_version": "2025-01-01",
        "created": int(time.time()),
        "type": event_type,
        "livemode": False,
        "data": {"object": obj},
    }


def session_completed(
    session_id: str,
    account_id: str,
    amount_cents: int,
    *,
    customer: str = "cus_test_saved",
    payment_status: str = "paid",
    event_id: str | None = None,
    payment_intent: str | None = None,
    event_type: str = "checkout.session.completed",
) -> dict[str, Any]:
    return event(
        event_type,
        {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "amount_total": amount_cents,
            "currency": "usd",
            "customer": customer,
            "client_reference_id": account_id,
            "metadata": {"account_id": account_id},
            "payment_status": payment_status,
            "payment_intent": payment_intent,
            "status": "complete",
        },
        event_id,
    )


def charge_refunded(intent: str, amount_cents: int, refunded_cents: int) -> dict[str, Any]:
    """``charge.refunded``: ``refunded_cents`` is the total refunded so far, as Stripe sends."""
    return event(
        "charge.refunded",
        {
            "id": _new_id("ch_"),
            "object": "charge",
            "amount": amount_cents,
            "amount_refunded": refunded_cents,
            "payment_intent": intent,
            "refunded": refunded_cents >= amount_cents,
        },
    )


def dispute_created(intent: str, amount_cents: int) -> dict[str, Any]:
    return event(
        "charge.dispute.created",
        {
            "id": _new_id("dp_"),
            "object": "dispute",
            "amount": amount_cents,
            "charge": _new_id("ch_"),
            "payment_intent": intent,
            "status": "needs_response",
        },
    )


def signed(
    payload: dict[str, Any], secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and the ``Stripe-Signature`` header Stripe would send for ``payload``."""
    body = json.dumps(payload, separators=(",", ":"))
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp)
    return body.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}
