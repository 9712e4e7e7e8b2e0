"""What x402 accepts and where it settles, derived once from the settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gpubridge.errors import ConfigurationError
from gpubridge.money import usd_to_micros
from gpubridge.settings import Settings

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]{1,32}$")
MAX_SERVICE_TAGS = 5
MAX_ICON_URL_CHARS = 2048
PAY_TO_SETTING = "GPUBRIDGE_X402_PAY_TO"


@dataclass(frozen=True)
class X402Config:
    """The payment terms of this server. Addresses are kept as configured (shown so in the
    challenge); compare them with ``same_address``."""

    network: str
    network_v1: str
    chain_id: int
    asset: str
    asset_name: str
    asset_version: str
    pay_to: str
    rpc_url: str
    facilitator_url: str | None
    max_timeout_s: int
    settle_timeout_s: float
    confirmations: int
    confirmations_large: int
    large_payment_micros: int
    require_tx_signature: bool
    deny_list: Path | None
    sanctions_oracle: str | None
    settlement_key: str | None
    """The operator's private key (hex); never logged, never in a repr."""
    service_name: str = "gpubridge"
    service_tags: tuple[str, ...] = ()
    service_icon_url: str | None = None

    def __repr__(self) -> str:
        return f"X402Config(network={self.network!r}, asset={self.asset!r}, pay_to={self.pay_to!r})"

    @property
    def can_settle(self) -> bool:
        return self.facilitator_url is not None or self.settlement_key is not None

    def confirmations_for(self, micros: int) -> int:
        """Confirmations a tx-hash payment of ``micros`` needs: more above the large amount."""
        if micros > self.large_payment_micros:
            return self.confirmations_large
        return self.confirmations

    @classmethod
    def from_settings(cls, settings: Settings) -> X402Config:
        """Check the x402 settings; a wrong one refuses to start with a clear message.

        There is no default recipient: money goes only to a wallet the operator named.
        """
        pay_to = settings.x402_pay_to or None
        if pay_to is None:
            raise ConfigurationError(f"{PAY_TO_SETTING} must name the wallet that receives USDC")
        if _ADDRESS.match(pay_to) and int(pay_to, 16) == 0:
            raise ConfigurationError(f"{PAY_TO_SETTING} may not be the zero address")
        expected_network = f"eip155:{settings.x402_chain_id}"
        if settings.x402_network != expected_network:
            raise ConfigurationError(
                f"GPUBRIDGE_X402_NETWORK is {settings.x402_network!r} but the chain id "
                f"{settings.x402_chain_id} means {expected_network!r}"
            )
        for name, value in (
            ("GPUBRIDGE_X402_ASSET", settings.x402_asset),
            (PAY_TO_SETTING, pay_to),
            ("GPUBRIDGE_X402_SANCTIONS_ORACLE", settings.x402_sanctions_oracle),
        ):
            if value is not None and not _ADDRESS.match(value):
                raise ConfigurationError(f"{name} must be a 0x-prefixed 20-byte address")
        key = settings.x402_settlement_key
        secret = key.get_secret_value() if key is not None else None
        if secret is not None and not _KEY.match(secret):
            raise ConfigurationError("GPUBRIDGE_X402_SETTLEMENT_KEY must be a 32-byte hex key")
        if settings.x402_max_timeout_s < 30:
            raise ConfigurationError("GPUBRIDGE_X402_MAX_TIMEOUT_S must be at least 30 seconds")
        if min(settings.x402_confirmations, settings.x402_confirmations_large) < 1:
            raise ConfigurationError("x402 confirmations must be at least 1")
        oracle = settings.x402_sanctions_oracle
        _check_listing(settings)
        return cls(
            network=settings.x402_network,
            network_v1=settings.x402_network_v1,
            chain_id=settings.x402_chain_id,
            asset=settings.x402_asset,
            asset_name=settings.x402_asset_name,
            asset_version=settings.x402_asset_version,
            pay_to=pay_to,
            rpc_url=settings.x402_rpc_url,
            facilitator_url=settings.x402_facilitator_url or None,
            max_timeout_s=settings.x402_max_timeout_s,
            settle_timeout_s=settings.x402_settle_timeout_s,
            confirmations=settings.x402_confirmations,
            confirmations_large=settings.x402_confirmations_large,
            large_payment_micros=usd_to_micros(settings.x402_large_payment_usd),
            require_tx_signature=settings.x402_require_tx_signature,
            deny_list=settings.x402_deny_list,
            sanctions_oracle=oracle or None,
            settlement_key=secret,
            service_name=settings.x402_service_name,
            service_tags=tuple(settings.x402_service_tags),
            service_icon_url=settings.x402_service_icon_url or None,
        )


def _check_listing(settings: Settings) -> None:
    """The Bazaar's rules for how a server is listed (facilitators silently drop a name, tag
    or icon that breaks them, so a wrong one refuses to start instead)."""
    if not _PRINTABLE_ASCII.match(settings.x402_service_name):
        raise ConfigurationError(
            "GPUBRIDGE_X402_SERVICE_NAME must be 1 to 32 printable ASCII characters"
        )
    tags = settings.x402_service_tags
    if len(tags) > MAX_SERVICE_TAGS or not all(_PRINTABLE_ASCII.match(tag) for tag in tags):
        raise ConfigurationError(
            f"GPUBRIDGE_X402_SERVICE_TAGS must be at most {MAX_SERVICE_TAGS} tags of 1 to 32 "
            "printable ASCII characters each"
        )
    if len({tag.lower() for tag in tags}) != len(tags):
        raise ConfigurationError("GPUBRIDGE_X402_SERVICE_TAGS has the same tag twice")
    icon = settings.x402_service_icon_url
    if icon:
        parts = urlsplit(icon)
        host = parts.hostname or ""
        if (
            len(icon) > MAX_ICON_URL_CHARS
            or parts.scheme not in ("http", "https")
            or not host
            or parts.username is not None
            or host == "localhost"
            or host.replace(".", "").isdigit()
            or ":" in host
        ):
            raise ConfigurationError(
                "GPUBRIDGE_X402_SERVICE_ICON_URL must be an absolute http(s) URL of a named "
                "host (not an IP address or localhost), without user info, of at most "
                f"{MAX_ICON_URL_CHARS} characters"
            )


def recipient_missing(settings: Settings) -> str | None:
    """Why USDC cannot be taken at all (no recipient wallet is set); None when one is."""
    if settings.x402_pay_to:
        return None
    return f"{PAY_TO_SETTING} (the operator's wallet that receives USDC) is not set"


def x402_off_reason(settings: Settings) -> str | None:
    """Why x402 is off on this server; None when it is on (enabled and a recipient set)."""
    if not settings.x402_enabled:
        return "GPUBRIDGE_X402_ENABLED is false"
    return recipient_missing(settings)


def same_address(a: str, b: str) -> bool:
    """Whether two hex addresses are the same, whatever their letter case."""
    return a.lower() == b.lower()
