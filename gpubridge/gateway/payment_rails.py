"""How this server takes money: what ``/catalog`` and the MCP catalog tell callers, and what
the start-up log tells the operator.

x402 and USDC top-ups need a recipient wallet the operator named (``GPUBRIDGE_X402_PAY_TO``);
without one they are off, and a paid request without an API key is refused with 401.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gpubridge.payments.crypto_topups import FEE_PER_MILLE, CryptoTopups
from gpubridge.payments.stripe_topups import CardTopups
from gpubridge.payments.x402 import X402
from gpubridge.payments.x402.config import X402Config, x402_off_reason
from gpubridge.settings import Settings

log = logging.getLogger(__name__)

REGISTER_PATH = "/account/register"


@dataclass(frozen=True)
class PaymentRails:
    """The payment rails of one gateway, as configured."""

    settings: Settings
    x402: X402 | None
    card_topups: CardTopups
    crypto_topups: CryptoTopups

    def view(self) -> dict[str, Any]:
        """The public ``payments`` object: every rail with ``offered``, and the terms of those
        that are."""
        public_url = self.settings.public_url
        x402: dict[str, Any] = {"offered": self.x402 is not None}
        if self.x402 is not None:
            x402.update(_x402_terms(self.x402.config))
            # upto: metered jobs (per token or second), settled with the settlement key.
            x402["schemes"] = ["exact", "upto"] if self.x402.metering is not None else ["exact"]
        usdc: dict[str, Any] = {"offered": self.crypto_topups.config is not None}
        if self.crypto_topups.config is not None:
            config = self.crypto_topups.config
            usdc.update(
                network=config.network,
                chain_id=config.chain_id,
                asset=config.asset,
                recipient=config.pay_to,
                fee_percent=FEE_PER_MILLE / 10,
            )
        return {
            "api_key": {"offered": True, "register_url": f"{public_url}{REGISTER_PATH}"},
            "x402": x402,
            "card_topups": {"offered": self.card_topups.api is not None},
            "usdc_topups": usdc,
        }

    def log_startup(self) -> None:
        """One line per money rail: where the money goes when it is on, why it is off when
        it is not (an operator's choice, so information, not a warning)."""
        if self.x402 is not None:
            config = self.x402.config
            log.info(
                "x402 payments on: paid to %s on %s (chain %d), asset %s, %s",
                config.pay_to,
                config.network,
                config.chain_id,
                config.asset,
                _settlement(config),
            )
        else:
            log.info(
                "x402 payments off: %s; paid requests without an API key are refused (401)",
                x402_off_reason(self.settings) or "not configured",
            )
        crypto = self.crypto_topups
        if crypto.config is not None:
            log.info(
                "USDC top-ups on: invoices are paid to %s on %s (chain %d)",
                crypto.config.pay_to,
                crypto.config.network,
                crypto.config.chain_id,
            )
        else:
            log.info("USDC top-ups off: %s", crypto.off_reason or "not configured")


def _x402_terms(config: X402Config) -> dict[str, Any]:
    return {
        "x402_versions": [1, 2],
        "scheme": "exact",
        "network": config.network,
        "network_v1": config.network_v1,
        "chain_id": config.chain_id,
        "asset": config.asset,
        "pay_to": config.pay_to,
        "max_timeout_s": config.max_timeout_s,
    }


def _settlement(config: X402Config) -> str:
    if config.facilitator_url is not None:
        return "settled through a facilitator"
    if config.settlement_key is not None:
        return "settled on chain with the operator's key"
    return "only transfers already on chain are accepted (no settlement key or facilitator)"
