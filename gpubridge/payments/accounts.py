"""Accounts and API keys. Keys are shown once and stored only as a SHA-256 hash."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import unicodedata
import uuid
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts
from gpubridge.errors import BadRequest, Conflict, InvalidInput, NotFound, Unauthorized
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

    async def register(self, email: str) -> NewAccount:
        address = normalize_email(email)
        api_key = new_api_key()
        account = Account(
            id=str(uuid.uuid4()),
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
            raise Unauthorized("invalid API key", code="invalid_api_key")
        account = Account(
            row.id,
            row.email,
            row.daily_limit_micros,
            row.webhook_secret,
            int(row.lifetime_spend_micros),
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self.cache_s, account)
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
        return Account(row.id, row.email, row.daily_limit_micros, row.webhook_secret)

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
        self._cache.clear()

    async def replace_key(
        self, conn: AsyncConnection, account_id: str, *, current_key: str | None = None
    ) -> str:
        """Give the account a new API key inside the caller's transaction; the old key stops
        working once it commits (call ``forget_cached`` then). With ``current_key``, only if
        that is still the account's key (Unauthorized otherwise)."""
        api_key = new_api_key()
        condition = accounts.c.id == account_id
        if current_key is not None:
            condition = condition & (accounts.c.api_key_hash == hash_key(current_key))
        result = await conn.execute(
            update(accounts)
            .where(condition)
            .values(api_key_hash=hash_key(api_key), api_key_prefix=api_key[:12])
        )
        if result.rowcount != 1:
            raise Unauthorized("invalid API key", code="invalid_api_key")
        return api_key

    async def regenerate_key(self, current_key: str) -> tuple[Account, str]:
        """A new API key in place of ``current_key``, which is invalid from then on (a second
        rotation with the same old key, even concurrent, fails)."""
        account = await self.authenticate(current_key)
        async with self.db.begin() as conn:
            api_key = await self.replace_key(conn, account.id, current_key=current_key)
        self.forget_cached()
        return account, api_key

    def forget_cached(self) -> None:
        """Drop cached authentications (after a key or an account changed)."""
        self._cache.clear()
