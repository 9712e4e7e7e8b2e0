"""The append-only credits ledger.

Every movement is one or more entries with two effects: on the spendable balance
(``available_delta``) and on the amount held for running jobs (``held_delta``).

- grant/topup: available +amount
- hold:        available -estimate, held +estimate
- capture:     held -cost (the money is spent)
- release:     held -(estimate - cost), available +(estimate - cost)
- refund:      held -estimate, available +estimate (failed or cancelled job)

``accounts.balance_micros`` is the running sum of ``available_delta``, updated in the same
transaction as the entry by a guarded statement, so an overdraft is refused atomically and no
update is lost under concurrency. The functions here take the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts, jobs, ledger_entries
from gpubridge.errors import InsufficientCredits, NotFound, SpendingLimitExceeded
from gpubridge.money import micros_to_usd
from gpubridge.payments.accounts import lock_account


async def _entry(
    conn: AsyncConnection,
    account_id: str,
    kind: str,
    *,
    available: int,
    held: int,
    job_id: str | None = None,
    memo: str = "",
    reference: str | None = None,
) -> None:
    await conn.execute(
        insert(ledger_entries).values(
            account_id=account_id,
            job_id=job_id,
            kind=kind,
            available_delta=available,
            held_delta=held,
            memo=memo[:200],
            reference=reference,
            created_at=utcnow(),
        )
    )


async def _add_balance(conn: AsyncConnection, account_id: str, delta: int) -> None:
    result = await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(balance_micros=accounts.c.balance_micros + delta)
    )
    if result.rowcount != 1:
        raise NotFound("account not found", code="account_not_found")


async def credit(
    conn: AsyncConnection,
    account_id: str,
    micros: int,
    *,
    kind: str = "grant",
    memo: str = "",
    reference: str | None = None,
) -> None:
    """Add spendable credits (operator grant, top-up). ``reference`` makes it idempotent:
    a second credit with the same reference violates a unique constraint."""
    if micros <= 0:
        raise ValueError("a credit must be positive")
    await _entry(conn, account_id, kind, available=micros, held=0, memo=memo, reference=reference)
    await _add_balance(conn, account_id, micros)


async def hold(
    conn: AsyncConnection,
    account_id: str,
    micros: int,
    *,
    job_id: str,
    daily_limit_micros: int,
) -> None:
    """Reserve ``micros`` for a job, enforcing the daily limit and the balance."""
    await lock_account(conn, account_id)
    spent_today = await daily_spend(conn, account_id)
    if spent_today + micros > daily_limit_micros:
        raise SpendingLimitExceeded(
            f"this job (${micros_to_usd(micros):.6f}) would take today's spend past the daily "
            f"limit of ${micros_to_usd(daily_limit_micros):.2f}; raise it with "
            "POST /account/spending-limit",
            daily_spend=micros_to_usd(spent_today),
            daily_limit=micros_to_usd(daily_limit_micros),
        )
    result = await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id, accounts.c.balance_micros >= micros)
        .values(balance_micros=accounts.c.balance_micros - micros)
    )
    if result.rowcount != 1:
        balance = await available_balance(conn, account_id)
        raise InsufficientCredits(
            f"insufficient credits: this job needs ${micros_to_usd(micros):.6f}, "
            f"the balance is ${micros_to_usd(balance):.6f}",
            required=micros_to_usd(micros),
            balance=micros_to_usd(balance),
        )
    await _entry(conn, account_id, "hold", available=-micros, held=micros, job_id=job_id)


async def capture(
    conn: AsyncConnection, account_id: str, *, job_id: str, held_micros: int, cost_micros: int
) -> None:
    """Spend ``cost_micros`` of a job's hold and release the rest."""
    if not 0 <= cost_micros <= held_micros:
        raise ValueError("a capture must be between zero and the amount held")
    await _entry(conn, account_id, "capture", available=0, held=-cost_micros, job_id=job_id)
    rest = held_micros - cost_micros
    if rest:
        await _entry(conn, account_id, "release", available=rest, held=-rest, job_id=job_id)
    await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(
            balance_micros=accounts.c.balance_micros + rest,
            lifetime_spend_micros=accounts.c.lifetime_spend_micros + cost_micros,
        )
    )


async def refund(
    conn: AsyncConnection, account_id: str, *, job_id: str, held_micros: int, memo: str = ""
) -> None:
    """Return a failed or cancelled job's whole hold."""
    await _entry(
        conn,
        account_id,
        "refund",
        available=held_micros,
        held=-held_micros,
        job_id=job_id,
        memo=memo,
    )
    await _add_balance(conn, account_id, held_micros)


async def available_balance(conn: AsyncConnection, account_id: str) -> int:
    value = await conn.scalar(select(accounts.c.balance_micros).where(accounts.c.id == account_id))
    if value is None:
        raise NotFound("account not found", code="account_not_found")
    return int(value)


async def ledger_totals(conn: AsyncConnection, account_id: str) -> tuple[int, int]:
    """(sum of available_delta, sum of held_delta) over all of an account's entries."""
    row = (
        await conn.execute(
            select(
                func.coalesce(func.sum(ledger_entries.c.available_delta), 0),
                func.coalesce(func.sum(ledger_entries.c.held_delta), 0),
            ).where(ledger_entries.c.account_id == account_id)
        )
    ).one()
    return int(row[0]), int(row[1])


def start_of_utc_day(now: datetime | None = None) -> datetime:
    now = now or utcnow()
    return datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)


async def daily_spend(conn: AsyncConnection, account_id: str, now: datetime | None = None) -> int:
    """Today's spend (UTC day): captured costs plus holds of jobs still running."""
    since = start_of_utc_day(now)
    amount = case(
        (jobs.c.status.in_(("pending", "running")), jobs.c.hold_micros),
        (jobs.c.status == "completed", func.coalesce(jobs.c.cost_micros, 0)),
        else_=0,
    )
    value = await conn.scalar(
        select(func.coalesce(func.sum(amount), 0)).where(
            jobs.c.account_id == account_id,
            jobs.c.created_at >= since,
            jobs.c.created_at < since + timedelta(days=1),
        )
    )
    return int(value or 0)


async def account_summary(conn: AsyncConnection, account_id: str) -> dict[str, Any]:
    row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
    if row is None:
        raise NotFound("account not found", code="account_not_found")
    return {
        "balance_micros": int(row.balance_micros),
        "lifetime_spend_micros": int(row.lifetime_spend_micros),
        "daily_limit_micros": int(row.daily_limit_micros),
        "email": row.email,
        "daily_spend_micros": await daily_spend(conn, account_id),
    }


async def lifetime_spend(conn: AsyncConnection, account_id: str) -> int:
    value = await conn.scalar(
        select(accounts.c.lifetime_spend_micros).where(accounts.c.id == account_id)
    )
    if value is None:
        raise NotFound("account not found", code="account_not_found")
    return int(value)


async def webhook_secret(conn: AsyncConnection, account_id: str) -> str:
    value = await conn.scalar(select(accounts.c.webhook_secret).where(accounts.c.id == account_id))
    if value is None:
        raise NotFound("account not found", code="account_not_found")
    return str(value)
