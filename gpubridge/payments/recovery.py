"""API-key recovery by email: a one-time token sent to the account's address buys a new key.

Knowing an email address is never enough: ``request_token`` only mails a token to that
address, and ``redeem`` issues a new key (retiring the old one) against that token. The answers
to the two email-only requests are the same whether or not an account exists, and take the
same time: the lookup and the mail happen in a background task.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from limits import RateLimitItem, RateLimitItemPerHour
from limits.aio.strategies import RateLimiter
from sqlalchemy import insert, select, update

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts, recovery_tokens
from gpubridge.errors import BadRequest, RateLimited
from gpubridge.payments.accounts import Accounts, normalize_email
from gpubridge.payments.mailer import Mail, Mailer

log = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 128


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invalid_token() -> BadRequest:
    return BadRequest(
        "the recovery token is invalid, expired or already used",
        code="invalid_recovery_token",
    )


@dataclass(frozen=True)
class RecoveredKey:
    account_id: str
    email: str
    api_key: str


class Recovery:
    """Recovery notices, one-time tokens and their redemption."""

    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        mailer: Mailer,
        limiter: RateLimiter | None,
        *,
        token_ttl_s: int,
        per_email_per_hour: int,
        public_url: str = "",
    ) -> None:
        self.db = db
        self.accounts = accounts
        self.mailer = mailer
        self.limiter = limiter if per_email_per_hour > 0 else None
        self.token_ttl_s = token_ttl_s
        self.public_url = public_url
        self._item: RateLimitItem = RateLimitItemPerHour(max(1, per_email_per_hour))
        self._tasks: set[asyncio.Task[None]] = set()

    async def request_notice(self, email: str) -> None:
        """Tell the address's owner, if there is one, that an account exists and how to recover."""
        address = normalize_email(email)
        await self._limit("recover-mail", address)
        self._background(self._send_notice, address)

    async def request_token(self, email: str) -> None:
        """Mail a one-time recovery token to the address, if an account has it."""
        address = normalize_email(email)
        await self._limit("recover-mail", address)
        self._background(self._send_token, address)

    async def redeem(self, email: str, token: str) -> RecoveredKey:
        """A new API key against a valid token; the token and the old key stop working."""
        address = normalize_email(email)
        await self._limit("recover-redeem", address)
        if not 0 < len(token) <= MAX_TOKEN_CHARS:
            raise invalid_token()
        digest = hash_token(token)
        now = utcnow()
        async with self.accounts.changing_keys() as change:
            conn = change.conn
            row = (
                await conn.execute(
                    select(recovery_tokens.c.token_hash, accounts.c.id, accounts.c.email)
                    .join(accounts, accounts.c.id == recovery_tokens.c.account_id)
                    .where(
                        recovery_tokens.c.token_hash == digest,
                        recovery_tokens.c.used_at.is_(None),
                        recovery_tokens.c.expires_at > now,
                    )
                )
            ).first()
            if (
                row is None
                or not hmac.compare_digest(row.token_hash, digest)
                or row.email != address
            ):
                raise invalid_token()
            claimed = await conn.execute(
                update(recovery_tokens)
                .where(
                    recovery_tokens.c.token_hash == digest,
                    recovery_tokens.c.used_at.is_(None),
                )
                .values(used_at=now)
            )
            if claimed.rowcount != 1:  # redeemed concurrently
                raise invalid_token()
            # Any other outstanding token for the account is retired with it.
            await conn.execute(
                update(recovery_tokens)
                .where(
                    recovery_tokens.c.account_id == row.id,
                    recovery_tokens.c.used_at.is_(None),
                )
                .values(used_at=now)
            )
            api_key = await change.replace(row.id)
            if api_key is None:  # the account went away meanwhile
                raise invalid_token()
        return RecoveredKey(row.id, address, api_key)

    async def drain(self) -> None:
        """Wait for the mail already being sent."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self, timeout_s: float = 10.0) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self.drain()
        except TimeoutError:
            for task in list(self._tasks):
                task.cancel()

    async def _limit(self, scope: str, address: str) -> None:
        if self.limiter is None:
            return
        # The address is hashed: the shared counter store never holds it in clear.
        identity = hashlib.sha256(address.encode()).hexdigest()
        try:
            if await self.limiter.hit(self._item, scope, identity):
                return
            stats = await self.limiter.get_window_stats(self._item, scope, identity)
        except Exception as exc:  # the counter store is down: do not refuse recovery
            log.warning("recovery rate-limit store failed: %s", type(exc).__name__)
            return
        raise RateLimited(
            "too many recovery requests for this address; try again later",
            retry_after=max(1, math.ceil(stats.reset_time - time.time())),
        )

    def _background(self, work: Callable[[str], Awaitable[None]], address: str) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(work, address))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Callable[[str], Awaitable[None]], address: str) -> None:
        try:
            await work(address)
        except Exception as exc:  # a background task: nobody else would see it
            log.warning("recovery mail was not sent: %s", type(exc).__name__)

    async def _account_id(self, address: str) -> str | None:
        async with self.db.connect() as conn:
            value = (
                await conn.execute(select(accounts.c.id).where(accounts.c.email == address))
            ).scalar_one_or_none()
        return None if value is None else str(value)

    async def _send_notice(self, address: str) -> None:
        if await self._account_id(address) is None:
            return
        base = self.public_url or ""
        await self.mailer.send(
            Mail(
                to=address,
                subject="Your gpubridge account",
                body=(
                    "A gpubridge account exists for this email address.\n\n"
                    "If you lost its API key, ask for a one-time recovery token:\n"
                    f'  POST {base}/account/recover-reset {{"email": "{address}"}}\n'
                    "The token arrives in a separate email; send it back with\n"
                    f'  POST {base}/account/recover-reset {{"email": "{address}", '
                    '"token": "..."}\n'
                    "to receive a new API key (the old key stops working).\n\n"
                    "If you did not ask for this, you can ignore this email."
                ),
            )
        )

    async def _send_token(self, address: str) -> None:
        account_id = await self._account_id(address)
        if account_id is None:
            return
        token = secrets.token_urlsafe(32)
        now = utcnow()
        async with self.db.begin() as conn:
            await conn.execute(
                insert(recovery_tokens).values(
                    token_hash=hash_token(token),
                    account_id=account_id,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.token_ttl_s),
                    used_at=None,
                )
            )
        minutes = max(1, self.token_ttl_s // 60)
        base = self.public_url or ""
        await self.mailer.send(
            Mail(
                to=address,
                subject="Your gpubridge recovery token",
                body=(
                    f"Your one-time recovery token (valid for {minutes} minutes):\n\n"
                    f"  {token}\n\n"
                    "Exchange it for a new API key (the old key stops working):\n"
                    f'  POST {base}/account/recover-reset {{"email": "{address}", '
                    f'"token": "{token}"}}\n\n'
                    "If you did not ask for this, ignore this email: your key is unchanged."
                ),
            )
        )
