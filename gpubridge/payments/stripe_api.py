"""The few Stripe API calls card top-ups make, through the official ``stripe`` library.

Amounts cross this boundary in cents; everything inside gpubridge stays micro-USD. The library
is imported on first use, so a gateway without Stripe configured never loads it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.errors import BackendError, ServiceUnavailable
from gpubridge.settings import Settings

if TYPE_CHECKING:
    from stripe import StripeClient, StripeError

log = logging.getLogger(__name__)

CURRENCY = "usd"


class StripeNotConfigured(ServiceUnavailable):
    code = "stripe_not_configured"


class StripeApiError(BackendError):
    """Stripe refused or could not be reached; nothing was stored."""

    code = "stripe_error"


class PaymentDeclined(StripeApiError):
    """A card payment was declined (``payment_intent`` is the failed intent's id, if any)."""

    code = "card_declined"


@dataclass(frozen=True)
class StripeConfig:
    secret_key: str
    webhook_secret: str
    api_base: str | None
    success_url: str
    cancel_url: str
    webhook_tolerance_s: int
    timeout_s: float
    max_network_retries: int

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeConfig | None:
        """The configuration, or None when the keys are not set (card top-ups are off)."""
        if settings.stripe_secret_key is None or settings.stripe_webhook_secret is None:
            return None
        base = settings.public_url.rstrip("/")
        success = settings.stripe_success_url or (
            f"{base}/account/dashboard?topup=success&session_id={{CHECKOUT_SESSION_ID}}"
            if base
            else ""
        )
        cancel = settings.stripe_cancel_url or (
            f"{base}/account/dashboard?topup=cancelled" if base else ""
        )
        return cls(
            secret_key=settings.stripe_secret_key.get_secret_value(),
            webhook_secret=settings.stripe_webhook_secret.get_secret_value(),
            api_base=settings.stripe_api_base,
            success_url=success,
            cancel_url=cancel,
            webhook_tolerance_s=settings.stripe_webhook_tolerance_s,
            timeout_s=settings.stripe_timeout_s,
            max_network_retries=settings.stripe_max_network_retries,
        )


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


@dataclass(frozen=True)
class Charge:
    payment_intent_id: str
    status: str


def _api_error(exc: StripeError, doing: str) -> StripeApiError:
    import stripe

    detail = {"stripe_code": exc.code} if exc.code else {}
    message = getattr(exc, "user_message", None) or exc._message or type(exc).__name__
    if isinstance(exc, stripe.CardError):
        intent = exc.error.payment_intent if exc.error is not None else None
        return PaymentDeclined(
            f"the card was declined: {message}",
            payment_intent=intent.id if intent is not None else None,
            **detail,
        )
    if isinstance(exc, stripe.APIConnectionError):
        return StripeApiError(f"could not reach Stripe to {doing}", code="stripe_unreachable")
    return StripeApiError(f"Stripe refused to {doing}: {message}", **detail)


class StripeApi:
    """An async ``StripeClient`` built on first use, closed with the gateway."""

    def __init__(self, config: StripeConfig) -> None:
        self.config = config
        self._client: StripeClient | None = None
        self._http: Any = None

    def _stripe(self) -> StripeClient:
        if self._client is None:
            import stripe

            self._http = stripe.HTTPXClient(timeout=self.config.timeout_s)
            addresses: dict[str, str] = {}
            if self.config.api_base:
                addresses["api"] = self.config.api_base
            self._client = stripe.StripeClient(
                self.config.secret_key,
                base_addresses=addresses,  # type: ignore[arg-type]
                http_client=self._http,
                max_network_retries=self.config.max_network_retries,
            )
        return self._client

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close_async()
            self._http = None
            self._client = None

    async def create_customer(self, account_id: str, email: str | None, key: str) -> str:
        import stripe

        params: dict[str, Any] = {"metadata": {"account_id": account_id}}
        if email:
            params["email"] = email
        try:
            customer = await self._stripe().v1.customers.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": key},
            )
        except stripe.StripeError as exc:
            raise _api_error(exc, "create a customer") from None
        return str(customer.id)

    async def create_checkout_session(
        self,
        *,
        account_id: str,
        customer: str,
        package: str,
        amount_cents: int,
        description: str,
        key: str,
    ) -> CheckoutSession:
        import stripe

        if not self.config.success_url or not self.config.cancel_url:
            raise StripeNotConfigured(
                "card top-ups need GPUBRIDGE_STRIPE_SUCCESS_URL and GPUBRIDGE_STRIPE_CANCEL_URL "
                "(or GPUBRIDGE_PUBLIC_URL)"
            )
        metadata = {"account_id": account_id, "package": package}
        try:
            session = await self._stripe().v1.checkout.sessions.create_async(
                {
                    "mode": "payment",
                    "customer": customer,
                    "client_reference_id": account_id,
                    "metadata": metadata,
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": CURRENCY,
                                "unit_amount": amount_cents,
                                "product_data": {"name": description},
                            },
                        }
                    ],
                    "payment_intent_data": {
                        "setup_future_usage": "off_session",
                        "metadata": metadata,
                    },
                    "success_url": self.config.success_url,
                    "cancel_url": self.config.cancel_url,
                },
                {"idempotency_key": key},
            )
        except stripe.StripeError as exc:
            raise _api_error(exc, "create a checkout session") from None
        if not session.url:
            raise StripeApiError("Stripe returned a checkout session without a URL")
        return CheckoutSession(id=str(session.id), url=str(session.url))

    async def saved_payment_method(self, customer: str) -> str | None:
        """The customer's default payment method, else the first saved card, else None."""
        import stripe

        client = self._stripe()
        try:
            found = await client.v1.customers.retrieve_async(customer)
            settings = getattr(found, "invoice_settings", None)
            default = getattr(settings, "default_payment_method", None) if settings else None
            if default:
                return default if isinstance(default, str) else str(default.id)
            cards = await client.v1.payment_methods.list_async(
                {"customer": customer, "type": "card", "limit": 1}
            )
        except stripe.StripeError as exc:
            raise _api_error(exc, "look up the saved card") from None
        return str(cards.data[0].id) if cards.data else None

    async def charge_off_session(
        self,
        *,
        customer: str,
        payment_method: str,
        amount_cents: int,
        description: str,
        metadata: dict[str, str],
        key: str,
    ) -> Charge:
        import stripe

        try:
            intent = await self._stripe().v1.payment_intents.create_async(
                {
                    "amount": amount_cents,
                    "currency": CURRENCY,
                    "customer": customer,
                    "payment_method": payment_method,
                    "off_session": True,
                    "confirm": True,
                    "description": description,
                    "metadata": metadata,
                },
                {"idempotency_key": key},
            )
        except stripe.StripeError as exc:
            raise _api_error(exc, "charge the saved card") from None
        return Charge(payment_intent_id=str(intent.id), status=str(intent.status))

    def verify_event(self, payload: bytes, signature: str | None) -> None:
        """Check the ``Stripe-Signature`` header over the raw body (SignatureVerificationError)."""
        import stripe

        # Only the signature: the caller parses the body once, with the bounded JSON parser.
        stripe.WebhookSignature.verify_header(
            payload, signature, self.config.webhook_secret, self.config.webhook_tolerance_s
        )
