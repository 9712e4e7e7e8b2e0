"""Accounts and API keys. Keys are shown once and stored only as a SHA-256 hash."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets
import time
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts
from gpubridge.errors import BadRequest, Conflict, InvalidInput, NotFound, Unauthorized
from gpubridge.ids import random_uuid
from gpubridge.money import usd_to_micros

KEY_PREFIX = "gpub_"
MIN_DAILY_LIMIT_MICROS = usd_to_micros(1)
MAX_DAILY_LIMIT_MICROS = usd_to_micros(10_000)


@dataclass(frozen=True)
class Account:
    id: str
    email: str | None
    daily_limit_micros: int
    webhook_secret: str
    lifetime_spend_micros: int = 0
    """As read at authentication (cached for ``cache_s``): it picks the discount tier."""


@dataclass(frozen=True)
class NewAccount:
    account: Account
    api_key: str


def hash_key(api_key: str) -> str:
    # Keys carry 256 bits of entropy, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(api_key.encode()).hexdigest()


def fingerprint(key_hash: str) -> str:
    """A short digest of a stored key hash that names the key's generation (a new key, a new
    fingerprint) and reveals nothing of it; dashboard sessions carry it."""
    return hashlib.sha256(b"gpubridge-key-generation:" + key_hash.encode()).hexdigest()[:32]


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """A webhook signing secret in the Standard Webhooks ``whsec_<base64>`` form."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
"""Control, format (zero-width, bidi), surrogate, private-use and unassigned characters."""


def normalize_email(email: str) -> str:
    """The one spelling an address is stored and looked up under.

    NFKC folds look-alike forms (full-width letters, ligatures) and the whole address is
    lowercased, so they cannot become distinct accounts; characters that are invisible or
    cannot be stored (controls, NUL, zero-width and bidi marks, lone surrogates) are refused.
    """
    stripped = email.strip()
    value = unicodedata.normalize("NFKC", stripped).lower()
    if any(
        unicodedata.category(char) in _INVISIBLE_CATEGORIES or char.isspace()
        for char in stripped + value
    ):
        raise InvalidInput(
            f"not a valid email address: {_safe_repr(email)} holds a control or invisible "
            "character",
            code="invalid_email",
            violations=[{"path": "email", "message": "control or invisible character"}],
        )
    local, _, domain = value.partition("@")
    if not local or "." not in domain or len(value) > 320 or " " in value:
        raise BadRequest(f"not a valid email address: {email!r}", code="invalid_email")
    return value


def _safe_repr(text: str) -> str:
    """``repr`` with every non-ASCII character escaped (a lone surrogate cannot be encoded)."""
    return ascii(text[:320])


class Accounts:
    """Registration and API-key authentication, with a short-lived lookup cache."""

    def __init__(self, db: Database, *, default_daily_limit_micros: int, cache_s: float) -> None:
        self.db = db
        self.default_daily_limit_micros = default_daily_limit_micros
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Account]] = {}
        # One lookup in flight per key: when a cached entry lapses under load, the requests
        # that hold the key wait for one query rather than queue a query each.
        self._lookups: dict[str, asyncio.Future[Account | None]] = {}
        self._generation = 0  # moves on whenever the cache is dropped

    async def register(self, email: str) -> NewAccount:
        address = normalize_email(email)
        api_key = new_api_key()
        account = Account(
            id=random_uuid(),
            email=address,
            daily_limit_micros=self.default_daily_limit_micros,
            webhook_secret=new_webhook_secret(),
        )
        try:
            async with self.db.begin() as conn:
                await conn.execute(
                    insert(accounts).values(
                        id=account.id,
                        email=address,
                        api_key_hash=hash_key(api_key),
                        api_key_prefix=api_key[:12],
                        webhook_secret=account.webhook_secret,
                        balance_micros=0,
                        lifetime_spend_micros=0,
                        daily_limit_micros=account.daily_limit_micros,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            raise Conflict(
                "an account with this email already exists; use key recovery",
                code="email_taken",
            ) from None
        return NewAccount(account, api_key)

    async def authenticate(self, api_key: str) -> Account:
        """The account owning ``api_key``, or Unauthorized."""
        if not api_key.startswith(KEY_PREFIX):
            raise Unauthorized("invalid API key", code="invalid_api_key")
        digest = hash_key(api_key)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached and cached[0] > now:
            return cached[1]
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(self._look_up(digest))
            self._lookups[digest] = lookup
            lookup.add_done_callback(functools.partial(self._looked_up, digest))
        account = await asyncio.shield(lookup)
        if account is None:
            raise Unauthorized("invalid API key", code="invalid_api_key")
        return account

    def _looked_up(self, digest: str, lookup: asyncio.Future[Account | None]) -> None:
        if self._lookups.get(digest) is lookup:  # not one started after a ``_forget``
            del self._lookups[digest]

    def _forget(self) -> None:
        """Drop the cached authentications (a key or a limit changed here)."""
        self._cache.clear()
        self._lookups.clear()
        self._generation += 1

    async def _look_up(self, digest: str) -> Account | None:
        """The account whose key hashes to ``digest``, read and cached; None when none does.
        A lookup that the cache was dropped during is not cached (its key may have changed)."""
        generation = self._generation
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        accounts.c.id,
                        accounts.c.email,
                        accounts.c.daily_limit_micros,
                        accounts.c.webhook_secret,
                        accounts.c.api_key_hash,
                        accounts.c.lifetime_spend_micros,
                    ).where(accounts.c.api_key_hash == digest)
                )
            ).first()
        if row is None or not hmac.compare_digest(row.api_key_hash, digest):
            return None
        account = Account(
            row.id,
            row.email,
            row.daily_limit_micros,
            row.webhook_secret,
            int(row.lifetime_spend_micros),
        )
        if generation == self._generation:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (time.monotonic() + self.cache_s, account)
        return account

    async def by_email(self, email: str) -> Account:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    select(accounts).where(accounts.c.email == normalize_email(email))
                )
            ).first()
        if row is None:
            raise NotFound(f"no account for {email}", code="account_not_found")
        return Account(
            row.id,
            row.email,
            row.daily_limit_micros,
            row.webhook_secret,
            lifetime_spend_micros=int(row.lifetime_spend_micros),
        )

    async def set_daily_limit(self, account: Account, limit_micros: int) -> None:
        if not MIN_DAILY_LIMIT_MICROS <= limit_micros <= MAX_DAILY_LIMIT_MICROS:
            raise BadRequest(
                "daily_limit must be between $1 and $10,000", code="invalid_daily_limit"
            )
        async with self.db.begin() as conn:
            await conn.execute(
                update(accounts)
                .where(accounts.c.id == account.id)
                .values(daily_limit_micros=limit_micros)
            )
        self._forget()

    @asynccontextmanager
    async def changing_keys(self) -> AsyncIterator[KeyChange]:
        """A transaction in which API keys are replaced: the only way keys change.

        When it ends (committed or not) this replica's cached authentications are dropped, so
        a replaced key stops working here at once; other replicas drop theirs within
        ``cache_s``."""
        try:
            async with self.db.begin() as conn:
                yield KeyChange(conn)
        finally:
            self._forget()

    async def regenerate_key(self, current_key: str) -> tuple[Account, str]:
        """A new API key in place of ``current_key``, which is invalid from then on (a second
        rotation with the same old key, even concurrent, fails)."""
        account = await self.authenticate(current_key)
        async with self.changing_keys() as change:
            api_key = await change.replace(
                account.id, where=accounts.c.api_key_hash == hash_key(current_key)
            )
        if api_key is None:  # rotated concurrently
            raise Unauthorized("invalid API key", code="invalid_api_key")
        return account, api_key

    async def key_fingerprint(self, account_id: str) -> str | None:
        """The fingerprint of the account's current API key, read fresh (not from the cache);
        None when the account is gone or has no key."""
        async with self.db.connect() as conn:
            digest = (
                await conn.execute(
                    select(accounts.c.api_key_hash).where(accounts.c.id == account_id)
                )
            ).scalar_one_or_none()
        return None if digest is None else fingerprint(digest)


class KeyChange:
    """Replaces API keys inside the transaction of ``Accounts.changing_keys``."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def replace(
        self,
        account_id: str,
        *,
        where: ColumnElement[bool] | None = None,
        also: dict[str, Any] | None = None,
    ) -> str | None:
        """Give the account a new API key (and the column values ``also``) if ``where`` holds
        for its row; None when nothing changed. The old key stops working once this commits."""
        api_key = new_api_key()
        condition = accounts.c.id == account_id
        if where is not None:
            condition = condition & where
        result = await self.conn.execute(
            update(accounts)
            .where(condition)
            .values(api_key_hash=hash_key(api_key), api_key_prefix=api_key[:12], **(also or {}))
        )
        return api_key if result.rowcount == 1 else None
