"""The append-only, double-entry credits ledger.

Every movement is a posting: rows that sum to zero over ``available_delta + held_delta``.
Customer rows have two effects, on the spendable balance (``available_delta``) and on the
amount held for running jobs (``held_delta``); money that enters or leaves the customers'
accounts is balanced by a row of a house account (``HOUSES``).

- grant/topup/x402: available +amount; house (grants, card, usdc, x402) -amount
- hold:        available -estimate, held +estimate
- capture:     held -cost; house revenue +cost
- release:     held -(estimate - cost), available +(estimate - cost)
- refund:      held -estimate, available +estimate (failed or cancelled job)
- reversal:    available -amount (a card payment refunded or disputed; may go below zero);
               house card +amount

A job has at most one hold, one settlement (capture or refund) and one release: a unique
constraint on ``(job_id, job_phase)`` refuses a second. ``accounts.balance_micros`` is the
running sum of ``available_delta``, updated in the same transaction as the entry by a guarded
statement, so an overdraft is refused atomically and no update is lost under concurrency. The
functions here take the caller's transaction; ``ledger_check`` proves the invariants.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts, ledger_entries
from gpubridge.errors import (
    GpubridgeError,
    InsufficientCredits,
    NegativeBalance,
    NotFound,
    SpendingLimitExceeded,
)
from gpubridge.ids import ordered_uuid
from gpubridge.money import micros_to_usd

LedgerEntry = dict[str, Any]


HOUSES = ("revenue", "grants", "card", "usdc", "x402")
"""The house accounts: where credits come from (grants, card, usdc, x402) and go (revenue)."""


def _row(
    account_id: str,
    kind: str,
    *,
    available: int,
    held: int,
    posting: str | None = None,
    job_id: str | None = None,
    phase: str | None = None,
    memo: str = "",
    reference: str | None = None,
) -> LedgerEntry:
    return {
        "account_id": account_id,
        "house": None,
        "posting_id": posting or ordered_uuid(),
        "job_id": job_id,
        "job_phase": phase,
        "kind": kind,
        "available_delta": available,
        "held_delta": held,
        "memo": memo[:200],
        "reference": reference,
        "created_at": utcnow(),
    }


def _house_row(house: str, balancing: LedgerEntry) -> LedgerEntry:
    """The house account's side of ``balancing``: the same posting, the opposite amount."""
    if house not in HOUSES:
        raise ValueError(f"unknown house account {house!r}")
    return {
        **balancing,
        "account_id": None,
        "house": house,
        "job_phase": None,
        "available_delta": -(balancing["available_delta"] + balancing["held_delta"]),
        "held_delta": 0,
        "reference": None,
    }


async def _append(conn: AsyncConnection, *entries: LedgerEntry) -> None:
    await conn.execute(INSERT_ENTRY, entries[0] if len(entries) == 1 else list(entries))


# The hot-path statements are built once: SQLAlchemy then reuses their compiled form and cache
# key instead of rebuilding both on every request. They are public for the money path's
# transactions that run on a synchronous connection (SQLite's writer): the same statements,
# the same rows.
INSERT_ENTRY = insert(ledger_entries)
_SPENT_TODAY = case(
    (accounts.c.spend_day == bindparam("today"), accounts.c.spend_day_micros), else_=0
)
HOLD = (
    update(accounts)
    .where(
        accounts.c.id == bindparam("account"),
        accounts.c.balance_micros >= bindparam("micros"),
        _SPENT_TODAY + bindparam("micros") <= accounts.c.daily_limit_micros,
    )
    .values(
        balance_micros=accounts.c.balance_micros - bindparam("micros"),
        spend_day=bindparam("today"),
        spend_day_micros=_SPENT_TODAY + bindparam("micros"),
    )
)
GIVE_BACK = (
    update(accounts)
    .where(accounts.c.id == bindparam("account"))
    .values(
        balance_micros=accounts.c.balance_micros + bindparam("returned"),
        lifetime_spend_micros=accounts.c.lifetime_spend_micros + bindparam("spent"),
        spend_day_micros=case(
            (
                accounts.c.spend_day == bindparam("held_on"),
                accounts.c.spend_day_micros - bindparam("returned"),
            ),
            else_=accounts.c.spend_day_micros,
        ),
    )
)


def _spent_on(day: date) -> ColumnElement[int]:
    """The account's spend counter as it stands for ``day`` (zero if it counts another day)."""
    return case((accounts.c.spend_day == day, accounts.c.spend_day_micros), else_=0)


async def credit(
    conn: AsyncConnection,
    account_id: str,
    micros: int,
    *,
    house: str,
    kind: str = "grant",
    memo: str = "",
    reference: str | None = None,
) -> None:
    """Add spendable credits (operator grant, top-up), from the ``house`` account they came
    in through. ``reference`` makes it idempotent: a second credit with the same reference
    violates a unique constraint."""
    if micros <= 0:
        raise ValueError("a credit must be positive")
    await _move(conn, account_id, micros, house, kind, memo, reference)


async def debit(
    conn: AsyncConnection,
    account_id: str,
    micros: int,
    *,
    house: str,
    kind: str = "reversal",
    memo: str = "",
    reference: str | None = None,
) -> None:
    """Take back credits whose payment was reversed (refund, dispute), to the ``house``
    account they came in through. Unlike a hold it is not refused when the balance is short:
    the balance may go below zero, and then no hold passes until a top-up. ``reference`` makes
    it idempotent, as for ``credit``."""
    if micros <= 0:
        raise ValueError("a debit must be positive")
    await _move(conn, account_id, -micros, house, kind, memo, reference)


async def _move(
    conn: AsyncConnection,
    account_id: str,
    micros: int,
    house: str,
    kind: str,
    memo: str,
    reference: str | None,
) -> None:
    """``micros`` (signed) into the account's spendable balance from ``house``."""
    entry = _row(account_id, kind, available=micros, held=0, memo=memo, reference=reference)
    await _append(conn, entry, _house_row(house, entry))
    result = await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(balance_micros=accounts.c.balance_micros + micros)
    )
    if result.rowcount != 1:
        raise NotFound("account not found", code="account_not_found")


async def hold(
    conn: AsyncConnection, account_id: str, micros: int, *, job_id: str, today: date | None = None
) -> None:
    """Reserve ``micros`` for a job, enforcing the balance and the daily limit (of the UTC day
    ``today``) in one guarded statement: atomic under concurrency on SQLite and PostgreSQL."""
    today = today or utcnow().date()
    result = await conn.execute(HOLD, {"account": account_id, "micros": micros, "today": today})
    if result.rowcount != 1:
        raise hold_refusal((await conn.execute(refusal_query(account_id, today))).first(), micros)
    await _append(conn, hold_entry(account_id, micros, job_id=job_id))


def hold_entry(account_id: str, micros: int, *, job_id: str) -> LedgerEntry:
    """The entry of a job's hold (``HOLD`` moves the balance)."""
    return _row(account_id, "hold", available=-micros, held=micros, job_id=job_id, phase="hold")


def refusal_query(account_id: str, today: date) -> Select[Any]:
    """What ``hold_refusal`` needs to say why a hold was refused."""
    return select(accounts.c.balance_micros, accounts.c.daily_limit_micros, _spent_on(today)).where(
        accounts.c.id == account_id
    )


def hold_refusal(row: Any, micros: int) -> GpubridgeError:
    """Why a hold of ``micros`` was refused, from the account's ``refusal_query`` row."""
    if row is None:
        return NotFound("account not found", code="account_not_found")
    balance, limit, spent = int(row[0]), int(row[1]), int(row[2])
    if spent + micros > limit:
        return SpendingLimitExceeded(
            f"this job (${micros_to_usd(micros):.6f}) would take today's spend past the daily "
            f"limit of ${micros_to_usd(limit):.2f}; raise it with POST /account/spending-limit",
            daily_spend=micros_to_usd(spent),
            daily_limit=micros_to_usd(limit),
        )
    if balance < 0:
        return NegativeBalance(
            f"the balance is ${micros_to_usd(balance):.6f}, below zero after a card payment "
            "was refunded or disputed: top up to start paid work again",
            required=micros_to_usd(micros),
            balance=micros_to_usd(balance),
        )
    return InsufficientCredits(
        f"insufficient credits: this job needs ${micros_to_usd(micros):.6f}, "
        f"the balance is ${micros_to_usd(balance):.6f}",
        required=micros_to_usd(micros),
        balance=micros_to_usd(balance),
    )


async def capture(
    conn: AsyncConnection,
    account_id: str,
    *,
    job_id: str,
    held_micros: int,
    cost_micros: int,
    held_on: date,
) -> None:
    """Spend ``cost_micros`` of a job's hold (placed on ``held_on``) and release the rest."""
    entries = capture_entries(account_id, job_id=job_id, held_micros=held_micros, cost=cost_micros)
    await _append(conn, *entries)
    await conn.execute(GIVE_BACK, give_back(account_id, held_micros, cost_micros, held_on))


def capture_entries(
    account_id: str, *, job_id: str, held_micros: int, cost: int
) -> list[LedgerEntry]:
    """The entries of a capture: the cost to revenue, and the release of the rest if any."""
    if not 0 <= cost <= held_micros:
        raise ValueError("a capture must be between zero and the amount held")
    rest = held_micros - cost
    captured = _row(account_id, "capture", available=0, held=-cost, job_id=job_id, phase="settle")
    entries = [captured, _house_row("revenue", captured)]
    if rest:
        entries.append(
            _row(account_id, "release", available=rest, held=-rest, job_id=job_id, phase="release")
        )
    return entries


def refund_entry(account_id: str, *, job_id: str, held_micros: int, memo: str) -> LedgerEntry:
    """The entry that returns a failed or cancelled job's whole hold."""
    return _row(
        account_id,
        "refund",
        available=held_micros,
        held=-held_micros,
        job_id=job_id,
        phase="settle",
        memo=memo,
    )


def give_back(account_id: str, held_micros: int, cost: int, held_on: date) -> dict[str, Any]:
    """``GIVE_BACK``'s parameters once a job held ``held_micros`` on ``held_on`` and spent
    ``cost`` of it (zero for a refund)."""
    return {
        "account": account_id,
        "returned": held_micros - cost,
        "spent": cost,
        "held_on": held_on,
    }


async def refund(
    conn: AsyncConnection,
    account_id: str,
    *,
    job_id: str,
    held_micros: int,
    held_on: date,
    memo: str = "",
) -> None:
    """Return a failed or cancelled job's whole hold (placed on ``held_on``)."""
    await _append(conn, refund_entry(account_id, job_id=job_id, held_micros=held_micros, memo=memo))
    await conn.execute(GIVE_BACK, give_back(account_id, held_micros, 0, held_on))


async def lock_account(conn: AsyncConnection, account_id: str) -> None:
    """Take the account's row lock first in a transaction that will also change one of its
    jobs. On PostgreSQL, every money movement locks the account row before a job row; taking
    them in the other order could deadlock with a concurrent submission (whose unique-key
    check waits on the job row). SQLite has a single writer and needs no lock."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            select(accounts.c.id).where(accounts.c.id == account_id).with_for_update(key_share=True)
        )


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


async def daily_spend(conn: AsyncConnection, account_id: str) -> int:
    """Today's spend (UTC day): captured costs plus holds of jobs still running."""
    value = await conn.scalar(select(_spent_on(utcnow().date())).where(accounts.c.id == account_id))
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
        "daily_spend_micros": (
            int(row.spend_day_micros) if row.spend_day == utcnow().date() else 0
        ),
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
