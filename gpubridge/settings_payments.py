"""The settings of the ways to pay: card top-ups (Stripe), x402 and USDC top-ups.

``Settings`` (gpubridge.settings) extends these with the rest of the server's settings; both
read ``GPUBRIDGE_`` environment variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def split_names(value: object) -> object:
    """A comma-separated (or JSON list) environment value as a list of names."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class PaymentSettings(BaseSettings):
    """How this server is paid. Card top-ups are off while the Stripe keys are unset; x402 and
    USDC top-ups while the operator's wallet (``x402_pay_to``) is."""

    model_config = SettingsConfigDict(env_prefix="GPUBRIDGE_", env_file=None, extra="ignore")

    # Card top-ups (Stripe Checkout) and auto top-up; off while the two keys are unset
    stripe_secret_key: SecretStr | None = Field(default=None, description="Stripe secret key.")
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, description="Signing secret (whsec_...) of the /webhooks/stripe endpoint."
    )
    stripe_api_base: str | None = Field(
        default=None, description="Stripe API base URL (tests point it at a local server)."
    )
    stripe_success_url: str = Field(
        default="", description="Where Checkout returns after payment (default: the dashboard)."
    )
    stripe_cancel_url: str = Field(
        default="", description="Where Checkout returns when cancelled (default: the dashboard)."
    )
    stripe_webhook_tolerance_s: int = Field(
        default=300, description="Oldest Stripe-Signature timestamp accepted, in seconds."
    )
    stripe_timeout_s: float = Field(
        default=30.0, description="Time limit for one request to Stripe's API, in seconds."
    )
    stripe_max_network_retries: int = Field(
        default=2, description="Retries of a Stripe API request that failed on the network."
    )

    # x402: pay per request in USDC (defaults: Base mainnet, as the API document says). Off
    # until the operator names the wallet that receives the money (x402_pay_to).
    x402_enabled: bool = Field(
        default=True,
        description=(
            "Answer unauthenticated paid requests with 402 and accept x402, once x402_pay_to "
            "is set; false keeps x402 off even then."
        ),
    )
    x402_network: str = Field(default="eip155:8453", description="CAIP-2 network (x402 v2).")
    x402_network_v1: str = Field(default="base", description="The network's x402 v1 name.")
    x402_chain_id: int = Field(default=8453, description="EVM chain id (the EIP-712 domain's).")
    x402_asset: str = Field(
        default="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        description="The USDC token contract (the EIP-712 domain's verifying contract).",
    )
    x402_asset_name: str = Field(default="USD Coin", description="The token's EIP-712 name.")
    x402_asset_version: str = Field(default="2", description="The token's EIP-712 version.")
    x402_pay_to: str | None = Field(
        default=None,
        description=(
            "The operator's wallet that receives x402 payments and USDC top-ups; unset: both "
            "are off, and requests without an API key are 401."
        ),
    )
    x402_rpc_url: str = Field(
        default="https://mainnet.base.org",
        description="JSON-RPC node.",
        repr=False,  # node providers put an access key in the URL
    )
    x402_settlement_key: SecretStr | None = Field(
        default=None,
        description="Private key that sends transferWithAuthorization (pays gas) to settle.",
    )
    x402_facilitator_url: str | None = Field(
        default=None,
        description="Settle through this x402 facilitator instead of the key.",
        repr=False,  # may hold an access key
    )
    x402_max_timeout_s: int = Field(default=300, description="The payment window in seconds.")
    x402_settle_timeout_s: float = Field(
        default=120.0,
        description=(
            "How long a settlement transaction may take to be mined before the request is "
            "answered 202 settlement_pending (its job starts once the transfer is confirmed)."
        ),
    )
    x402_confirmations: int = Field(
        default=1, description="Confirmations a tx-hash payment needs up to the large amount."
    )
    x402_confirmations_large: int = Field(
        default=5, description="Confirmations a payment above the large amount needs."
    )
    x402_large_payment_usd: int = Field(
        default=10, description="Payments above this many USD need the larger confirmations."
    )
    x402_require_tx_signature: bool = Field(
        default=True,
        description=(
            "Tx-hash payments must carry the payer's signature over the request; false "
            "accepts unsigned proofs, which anyone who sees the transfer can send first."
        ),
    )
    x402_deny_list: Path | None = Field(
        default=None, description="File of sanctioned addresses, one per line ('#' comments)."
    )
    x402_sanctions_oracle: str | None = Field(
        default=None, description="On-chain oracle with isSanctioned(address), when set."
    )
    # How x402 directories (Bazaar) list this server: the 402's resource.serviceName, tags
    # and iconUrl. Facilitators drop values outside these rules, so they refuse to start.
    x402_service_name: str = Field(
        default="gpubridge",
        description="The name directories show for this server: 1-32 printable ASCII characters.",
    )
    x402_service_tags: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["ai", "inference", "llm", "image-generation", "speech"],
        description="Up to 5 search tags, each 1-32 printable ASCII characters, comma-separated.",
    )
    x402_service_icon_url: str | None = Field(
        default=None, description="An absolute https:// (or http://) URL of the server's icon."
    )

    # USDC top-ups (POST /account/topup-crypto): chain, token, recipient, RPC node and
    # confirmations are the x402 settings above; off while x402_pay_to is unset
    crypto_topups_enabled: bool = Field(
        default=True,
        description=(
            "Sell credit packages for USDC sent to x402_pay_to, once it is set (whether or not "
            "x402_enabled is)."
        ),
    )
    crypto_invoice_ttl_s: int = Field(
        default=3600, description="How long a USDC invoice's exact amount stays reserved."
    )
    crypto_scan_blocks: int = Field(
        default=2000, description="Most blocks one USDC watcher log query covers."
    )

    @field_validator("x402_service_tags", mode="before")
    @classmethod
    def _split_tags(cls, value: object) -> object:
        return split_names(value)
