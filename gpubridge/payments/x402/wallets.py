"""Wallet accounts: the account of an x402 payer (no email, its wallet address instead).

Its jobs appear in its history and whatever it paid and did not spend (a refund, the excess
over a job's actual cost) stays in its balance. The wallet claims the account by signing a
fresh ``claim_message`` (EIP-191 ``personal_sign``); the claim issues an API key, so the
credits can be spent like any account's. Each claim must be newer than the last one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.exc import IntegrityError

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts
from gpubridge.errors import BadRequest, Conflict, NotFound, Unauthorized
from gpubridge.ids import random_uuid
from gpubridge.payments.accounts import (
    MAX_DAILY_LIMIT_MICROS,
    Account,
    Accounts,
    new_webhook_secret,
)

CLAIM_MAX_AGE = timedelta(minutes=5)
CLAIM_MAX_SKEW = timedelta(minutes=1)
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_CLAIM = re.compile(
    r"^gpubridge wallet claim\n"
    r"address: (?P<address>0x[0-9a-fA-F]{40})\n"
    r"server: (?P<server>\S+)\n"
    r"issued-at: (?P<issued>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$"
)


@dataclass(frozen=True)
class Claimed:
    account: Account
    address: str
    api_key: str


def claim_message(address: str, server: str, issued_at: datetime) -> str:
    """The text a wallet signs to claim its account on ``server`` (this server's base URL)."""
    return (
        "gpubridge wallet claim\n"
        f"address: {address.lower()}\n"
        f"server: {server}\n"
        f"issued-at: {issued_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    )


def _account(row: Any) -> Account:
    return Account(
        row.id,
        row.email,
        row.daily_limit_micros,
        row.webhook_secret,
        int(row.lifetime_spend_micros),
    )


async def find_wallet_account(db: Database, address: str) -> Account | None:
    async with db.connect() as conn:
        row = (
            await conn.execute(select(accounts).where(accounts.c.wallet_address == address.lower()))
        ).first()
    return _account(row) if row is not None else None


async def ensure_wallet_account(db: Database, address: str) -> Account:
    """The wallet's account, created on its first payment (in its own transaction)."""
    found = await find_wallet_account(db, address)
    if found is not None:
        return found
    account = Account(
        id=random_uuid(),
        email=None,
        # Every job of a wallet account is paid before it runs: the daily limit protects
        # prepaid balances against runaway keys, so a wallet starts at the highest one.
        daily_limit_micros=MAX_DAILY_LIMIT_MICROS,
        webhook_secret=new_webhook_secret(),
    )
    try:
        async with db.begin() as conn:
            await conn.execute(
                insert(accounts).values(
                    id=account.id,
                    email=None,
                    wallet_address=address.lower(),
                    webhook_secret=account.webhook_secret,
                    balance_micros=0,
                    lifetime_spend_micros=0,
                    daily_limit_micros=account.daily_limit_micros,
                    created_at=utcnow(),
                )
            )
    except IntegrityError:
        # The same wallet's first two payments raced; the other one created it.
        found = await find_wallet_account(db, address)
        if found is None:
            raise
        return found
    return account


async def claim(
    keys: Accounts,
    address: str,
    message: str,
    signature: str,
    *,
    server: str,
    now: datetime | None = None,
) -> Claimed:
    """Issue a new API key for the wallet account of ``address`` against a signed claim (the
    previous claim's key stops working at once)."""
    from gpubridge.payments.x402.signatures import personal_message_digest, recover

    if not _ADDRESS.match(address):
        raise BadRequest("address must be a 0x-prefixed 20-byte address", code="invalid_claim")
    match = _CLAIM.match(message.replace("\r\n", "\n"))
    if match is None or match["address"].lower() != address.lower():
        raise BadRequest(
            "the message must be the claim text for this address (see docs/x402.md)",
            code="invalid_claim",
            expected_format=claim_message(address, server, utcnow()),
        )
    if match["server"] != server:
        raise BadRequest(f"the claim must name this server: {server}", code="invalid_claim")
    issued_at = datetime.strptime(match["issued"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    now = now or utcnow()
    if not now - CLAIM_MAX_AGE <= issued_at <= now + CLAIM_MAX_SKEW:
        raise BadRequest("the claim must be issued within the last 5 minutes", code="claim_expired")
    try:
        signature_bytes = bytes.fromhex(signature.removeprefix("0x"))
    except ValueError:
        signature_bytes = b""
    if recover(personal_message_digest(message), signature_bytes) != address.lower():
        raise Unauthorized(
            "the signature is not by this address over the message",
            code="invalid_claim_signature",
        )
    account = await find_wallet_account(keys.db, address)
    if account is None:
        raise NotFound("no payments from this wallet yet", code="wallet_not_found")
    async with keys.changing_keys() as change:
        api_key = await change.replace(
            account.id,
            where=or_(
                accounts.c.wallet_claimed_at.is_(None),
                accounts.c.wallet_claimed_at < issued_at,
            ),
            also={"wallet_claimed_at": issued_at},
        )
    if api_key is None:
        raise Conflict(
            "a claim issued at the same time or later was already used; sign a new one",
            code="claim_replayed",
        )
    return Claimed(account, address.lower(), api_key)
