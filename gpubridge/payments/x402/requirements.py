"""Payment requirements for one request, in the shapes x402 version 1 and version 2 clients read.

Version 2: the ``PaymentRequired`` object (``x402Version: 2``, ``resource``, ``accepts`` with
``amount`` and a CAIP-2 ``network``), base64 JSON in the ``PAYMENT-REQUIRED`` header. Version 1
(and the API document): the body ``{"x402Version": 1, "error", "accepts": [...]}`` with
``maxAmountRequired`` and the network's v1 name. The body also carries the v2 object under
``paymentRequired``, so one response serves clients of either version.

A metered job (priced per token or per second) is also offered as ``upto`` in version 2: the
client authorizes the ceiling through Permit2, and the server settles what the job used.

Both describe the resource for discovery: the v2 object names the service (``resource``'s
``serviceName``, ``tags``, ``iconUrl``) and carries the offer's extensions (the Bazaar
extension, ``bazaar.py``); a v1 requirement carries the Bazaar description in ``outputSchema``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpubridge.payments.x402 import errors
from gpubridge.payments.x402.bazaar import BAZAAR, v1_output_schema
from gpubridge.payments.x402.config import X402Config, same_address
from gpubridge.payments.x402.errors import PaymentRejected

SCHEME_EXACT = "exact"
SCHEME_UPTO = "upto"


@dataclass(frozen=True)
class Offer:
    """What one request costs and what it buys; ``amount_micros`` is USDC atomic units."""

    amount_micros: int
    resource: str
    description: str
    mime_type: str = "application/json"
    extensions: Mapping[str, Any] = field(default_factory=dict)
    """x402 extensions of the challenge, keyed by name (``bazaar``: how to call the resource)."""
    upto_facilitator: str | None = None
    """Who settles a metered (``upto``) payment for this request; None when the request is
    not metered or this server cannot settle one: then only ``exact`` is offered."""


def _extra(config: X402Config) -> dict[str, Any]:
    return {"name": config.asset_name, "version": config.asset_version}


def requirements_v2(config: X402Config, offer: Offer) -> dict[str, Any]:
    return {
        "scheme": SCHEME_EXACT,
        "network": config.network,
        "amount": str(offer.amount_micros),
        "asset": config.asset,
        "payTo": config.pay_to,
        "maxTimeoutSeconds": config.max_timeout_s,
        "extra": _extra(config),
    }


def requirements_upto(config: X402Config, offer: Offer) -> dict[str, Any]:
    """The ``upto`` requirement: authorize up to the ceiling with Permit2; the server settles
    what the job used, after it ends."""
    return {
        **requirements_v2(config, offer),
        "scheme": SCHEME_UPTO,
        "extra": {
            **_extra(config),
            "assetTransferMethod": "permit2",
            "facilitatorAddress": offer.upto_facilitator,
        },
    }


def accepts_v2(config: X402Config, offer: Offer) -> list[dict[str, Any]]:
    """What a version 2 client may pay with: ``exact`` always, ``upto`` for metered jobs."""
    accepts = [requirements_v2(config, offer)]
    if offer.upto_facilitator is not None:
        accepts.append(requirements_upto(config, offer))
    return accepts


def requirements_v1(config: X402Config, offer: Offer) -> dict[str, Any]:
    requirements = {
        "scheme": SCHEME_EXACT,
        "network": config.network_v1,
        "maxAmountRequired": str(offer.amount_micros),
        "resource": offer.resource,
        "description": offer.description,
        "mimeType": offer.mime_type,
        "payTo": config.pay_to,
        "maxTimeoutSeconds": config.max_timeout_s,
        "asset": config.asset,
        "extra": _extra(config),
    }
    bazaar = offer.extensions.get(BAZAAR)
    described = v1_output_schema(bazaar) if bazaar is not None else None
    if described is not None:
        requirements["outputSchema"] = described
    return requirements


def resource_info(config: X402Config, offer: Offer) -> dict[str, Any]:
    """The v2 ``resource`` object: the URL and what it is, and the service it belongs to."""
    resource: dict[str, Any] = {
        "url": offer.resource,
        "description": offer.description,
        "mimeType": offer.mime_type,
        "serviceName": config.service_name,
    }
    if config.service_tags:
        resource["tags"] = list(config.service_tags)
    if config.service_icon_url is not None:
        resource["iconUrl"] = config.service_icon_url
    return resource


def payment_required(config: X402Config, offer: Offer, error: str) -> dict[str, Any]:
    """The version 2 ``PaymentRequired`` object."""
    required: dict[str, Any] = {
        "x402Version": 2,
        "error": error,
        "resource": resource_info(config, offer),
        "accepts": accepts_v2(config, offer),
    }
    if offer.extensions:
        required["extensions"] = dict(offer.extensions)
    return required


def challenge_body(
    config: X402Config, offer: Offer, error: str, message: str, v2: dict[str, Any]
) -> dict[str, Any]:
    """The 402 body: the version 1 object, a human message, and the version 2 object."""
    return {
        "x402Version": 1,
        "error": error,
        "message": message,
        "accepts": [requirements_v1(config, offer)],
        "paymentRequired": v2,
    }


def check_stated(config: X402Config, accepted: dict[str, Any], offer: Offer) -> None:
    """``PaymentRejected`` unless the requirements a v2 client says it pays (``accepted``)
    are this request's: its asset, its recipient and its amount."""
    asset, pay_to = accepted.get("asset"), accepted.get("payTo")
    if not isinstance(asset, str) or not same_address(asset, config.asset):
        raise PaymentRejected(errors.REQUIREMENTS_MISMATCH, f"the asset must be {config.asset}")
    if not isinstance(pay_to, str) or not same_address(pay_to, config.pay_to):
        raise PaymentRejected(errors.RECIPIENT_MISMATCH, f"payTo must be {config.pay_to}")
    if accepted.get("amount") != str(offer.amount_micros):
        raise PaymentRejected(
            errors.VALUE_MISMATCH, f"this request's amount is {offer.amount_micros} atomic units"
        )
