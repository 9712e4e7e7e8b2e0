"""Sign-in with a wallet (the x402 ``sign-in-with-x`` extension): a returning payer spends its
wallet account's credit without a new payment.

Every 402 for an HTTP resource declares the extension with a fresh challenge (this server's
domain, the resource, a nonce, issued now and valid for ``VALID_S``) on this server's network,
signed the EIP-191 way (EIP-4361 messages). The client answers with the ``SIGN-IN-WITH-X``
header; the x402 SDK parses it, checks its domain, URI origin and times
(``validate_siwx_message``) and its signature (``verify_siwx_signature``: EOA wallets). Each
signed message is used once (its nonce is recorded), so a header seen in transit cannot spend
the wallet's credit again. The wallet account is the one the payments and the claim flow use
(``wallets``).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.db.tables import x402_sign_ins
from gpubridge.payments.x402.config import X402Config
from gpubridge.payments.x402.errors import PaymentRejected
from gpubridge.recursion import keep_recursion_limit

SIGN_IN_WITH_X = "sign-in-with-x"
HEADER = "SIGN-IN-WITH-X"
VALID_S = 300
STATEMENT = "Sign in to pay with this wallet's gpubridge credit"
NONCE_USED = "invalid_siwx_nonce_used"
WRONG_CHAIN = "invalid_siwx_chain_id"
MALFORMED = "invalid_siwx_payload"


@cache
def _sdk() -> Any:
    with keep_recursion_limit():  # the Ethereum libraries may raise it process-wide on import
        from x402.extensions import sign_in_with_x

    return sign_in_with_x


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def origin_of(resource: str) -> str | None:
    """``scheme://host[:port]`` of an HTTP resource; None for any other (an MCP tool)."""
    parsed = urlparse(resource)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return None
    return f"{parsed.scheme}://{parsed.netloc}"


def declaration(config: X402Config, resource: str) -> dict[str, Any] | None:
    """The 402's ``sign-in-with-x`` extension for ``resource`` (None unless it is HTTP)."""
    if origin_of(resource) is None:
        return None
    now = utcnow()
    info = {
        "domain": urlparse(resource).netloc,
        "uri": resource,
        "version": "1",
        "nonce": secrets.token_hex(16),
        "issuedAt": _iso(now),
        "expirationTime": _iso(now + timedelta(seconds=VALID_S)),
        "statement": STATEMENT,
        "resources": [resource],
    }
    return {
        "info": info,
        "supportedChains": [{"chainId": config.network, "type": "eip191"}],
        "schema": _sdk().build_siwx_schema(),
    }


async def signed_in(db: Database, config: X402Config, header: str, resource: str) -> str:
    """The wallet (lowercase) that signed this ``SIGN-IN-WITH-X`` header for this server, once;
    ``PaymentRejected`` with the SDK's reason otherwise."""
    sdk = _sdk()
    origin = origin_of(resource)
    if origin is None:
        raise PaymentRejected(MALFORMED, "sign-in is for HTTP resources")
    try:
        payload = sdk.parse_siwx_header(header.strip())
    except ValueError as exc:
        raise PaymentRejected(MALFORMED, str(exc)[:200]) from None
    if payload.chain_id != config.network or payload.type != "eip191":
        raise PaymentRejected(WRONG_CHAIN, f"sign in on {config.network} (eip191)")
    validation = await sdk.validate_siwx_message(payload, origin)
    if not validation.is_valid:
        raise PaymentRejected(
            str(validation.invalid_reason), str(validation.invalid_message or "invalid sign-in")
        )
    verification = await sdk.verify_siwx_signature(payload)
    if not verification.is_valid or not verification.payer:
        raise PaymentRejected(
            str(verification.invalid_reason),
            str(verification.invalid_message or "the sign-in signature is not the wallet's"),
        )
    address = str(verification.payer).lower()
    try:
        async with db.begin() as conn:
            await conn.execute(
                insert(x402_sign_ins).values(
                    nonce=payload.nonce[:128], address=address, used_at=utcnow()
                )
            )
    except IntegrityError:
        raise PaymentRejected(NONCE_USED, "this sign-in message was used already") from None
    return address
