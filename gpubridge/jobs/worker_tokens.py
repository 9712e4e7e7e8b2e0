"""Tokens that admit remote workers: stored hashed, each naming the services it may serve.

A worker token is good for one thing only: connecting as a worker for its services. It is not
an API key; it opens no account, balance or job route.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import worker_tokens
from gpubridge.ids import random_uuid

PREFIX = "gpubw_"


@dataclass(frozen=True)
class WorkerGrant:
    """What a valid token admits: a worker by this name, for these services."""

    id: str
    name: str
    services: list[str]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create(conn: AsyncConnection, name: str, services: list[str]) -> str:
    """A new token for a worker called ``name`` serving ``services`` (shell-style patterns);
    returned once, stored only as its hash."""
    token = PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        insert(worker_tokens).values(
            id=random_uuid(),
            name=name,
            token_hash=_digest(token),
            services=services,
            created_at=utcnow(),
        )
    )
    return token


async def verify(conn: AsyncConnection, token: str) -> WorkerGrant | None:
    """The grant of an unrevoked token, else ``None``."""
    if not token.startswith(PREFIX):
        return None
    digest = _digest(token)
    row = (
        await conn.execute(
            select(worker_tokens).where(
                worker_tokens.c.token_hash == digest, worker_tokens.c.revoked_at.is_(None)
            )
        )
    ).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return WorkerGrant(id=row.id, name=row.name, services=list(row.services))


async def revoke(conn: AsyncConnection, name: str) -> int:
    """Revoke every token of the worker ``name``; returns how many."""
    result = await conn.execute(
        update(worker_tokens)
        .where(worker_tokens.c.name == name, worker_tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return result.rowcount
