"""Proof that the ledger holds together, for ``gpubridge ledger check`` and ``/metrics``.

- every posting balances: its rows sum to zero;
- every account's balance is the sum of its entries;
- every job's hold is accounted for: a running job still holds what it reserved, an ended one
  holds nothing, a completed one captured its cost, a failed or cancelled one nothing, and no
  job captured more than it held;
- house accounts agree with the outside records: card inflow with the paid Checkout sessions
  and auto top-up charges, USDC inflow with the paid invoices, x402 inflow with the settled
  payments and the refused tx-hash transfers credited to their senders, revenue with the
  costs of completed jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, case, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db.tables import (
    accounts,
    auto_topups,
    checkout_sessions,
    crypto_invoices,
    jobs,
    ledger_entries,
    x402_payments,
)

SHOWN_ROWS = 20
"""Offending rows listed per finding."""

e = ledger_entries


@dataclass(frozen=True)
class Finding:
    """One broken invariant and (up to ``SHOWN_ROWS`` of) the rows that break it."""

    check: str
    message: str
    rows: list[dict[str, Any]]


@dataclass
class LedgerReport:
    entries: int
    accounts: int
    jobs: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        counts = f"{self.entries} entries, {self.accounts} accounts, {self.jobs} jobs"
        if self.ok:
            return f"ledger check: ok ({counts})"
        lines = [f"ledger check: {len(self.findings)} problem(s) ({counts})"]
        for finding in self.findings:
            lines.append(f"- {finding.check}: {finding.message}")
            lines.extend(f"    {row}" for row in finding.rows)
        return "\n".join(lines)


async def check_ledger(conn: AsyncConnection) -> LedgerReport:
    """Run every check in one read of the database."""
    report = LedgerReport(
        entries=await _count(conn, select(func.count()).select_from(e)),
        accounts=await _count(conn, select(func.count()).select_from(accounts)),
        jobs=await _count(conn, select(func.count()).select_from(jobs)),
    )
    for check, message, query in _CHECKS:
        rows = [dict(r._mapping) for r in (await conn.execute(query.limit(SHOWN_ROWS))).all()]
        if rows:
            report.findings.append(Finding(check, message, rows))
    return report


async def _count(conn: AsyncConnection, query: Select[Any]) -> int:
    return int(await conn.scalar(query) or 0)


def _unbalanced_postings() -> Select[Any]:
    total = func.sum(e.c.available_delta + e.c.held_delta)
    return (
        select(e.c.posting_id, total.label("sum"))
        .group_by(e.c.posting_id)
        .having(total != 0)
        .order_by(e.c.posting_id)
    )


def _wrong_balances() -> Select[Any]:
    sums = (
        select(e.c.account_id, func.sum(e.c.available_delta).label("entries"))
        .where(e.c.account_id.is_not(None))
        .group_by(e.c.account_id)
        .subquery()
    )
    from_entries = func.coalesce(sums.c.entries, 0)
    return (
        select(accounts.c.id, accounts.c.balance_micros, from_entries.label("entries"))
        .outerjoin(sums, sums.c.account_id == accounts.c.id)
        .where(accounts.c.balance_micros != from_entries)
        .order_by(accounts.c.id)
    )


def _jobs_not_settled() -> Select[Any]:
    per_job = (
        select(
            e.c.job_id,
            func.sum(e.c.held_delta).label("held"),
            func.sum(case((e.c.kind == "capture", -e.c.held_delta), else_=0)).label("captured"),
        )
        .where(e.c.account_id.is_not(None), e.c.job_id.is_not(None))
        .group_by(e.c.job_id)
        .subquery()
    )
    held = func.coalesce(per_job.c.held, 0)
    captured = func.coalesce(per_job.c.captured, 0)
    cost = func.coalesce(jobs.c.cost_micros, 0)
    active = jobs.c.status.in_(("pending", "running"))
    wrong = (
        (active & (held != jobs.c.hold_micros))
        | (~active & (held != 0))
        | ((jobs.c.status == "completed") & (captured != cost))
        | (jobs.c.status.in_(("failed", "cancelled")) & (captured != 0))
        | (captured > jobs.c.hold_micros)
    )
    return (
        select(
            jobs.c.id,
            jobs.c.status,
            jobs.c.hold_micros,
            jobs.c.cost_micros,
            held.label("still_held"),
            captured.label("captured"),
        )
        .outerjoin(per_job, per_job.c.job_id == jobs.c.id)
        .where(wrong)
        .order_by(jobs.c.id)
    )


def _house_total(house: str, *kinds: str) -> Any:
    """What entered the customers' accounts through ``house`` (its entries, negated)."""
    query = select(func.coalesce(func.sum(-e.c.available_delta), 0)).where(e.c.house == house)
    if kinds:
        query = query.where(e.c.kind.in_(kinds))
    return query.scalar_subquery()


def _total(column: Any, *where: Any) -> Any:
    return select(func.coalesce(func.sum(column), 0)).where(*where).scalar_subquery()


def _house_mismatches() -> Select[Any]:
    pairs = [
        (
            "card",
            _house_total("card", "topup"),
            _total(checkout_sessions.c.credits_micros, checkout_sessions.c.status == "completed")
            + _total(auto_topups.c.credits_micros, auto_topups.c.status == "succeeded"),
        ),
        (
            "usdc",
            _house_total("usdc"),
            _total(crypto_invoices.c.credits_micros, crypto_invoices.c.status == "paid"),
        ),
        (
            # Settled payments, and tx-hash transfers that paid no request (too little, too
            # late) but were credited to their sender's wallet account; a metered payment
            # counts its maximum until it settles, then what it settled for.
            "x402",
            _house_total("x402"),
            _total(
                x402_payments.c.amount_micros,
                x402_payments.c.status.in_(("settled", "credited", "authorized", "settling")),
            ),
        ),
        (
            "revenue",
            -_house_total("revenue"),
            _total(jobs.c.cost_micros, jobs.c.status == "completed"),
        ),
    ]
    rows = union_all(
        *(
            select(
                literal(house).label("house"),
                ledger.label("ledger"),
                records.label("records"),
            )
            for house, ledger, records in pairs
        )
    ).subquery()
    return select(rows).where(rows.c.ledger != rows.c.records).order_by(rows.c.house)


_CHECKS: list[tuple[str, str, Select[Any]]] = [
    ("unbalanced_posting", "entries of one posting do not sum to zero", _unbalanced_postings()),
    ("balance_mismatch", "balance differs from the sum of its entries", _wrong_balances()),
    (
        "job_not_settled",
        "a job's hold is not captured or returned as it should",
        _jobs_not_settled(),
    ),
    ("house_mismatch", "a house account differs from the payment records", _house_mismatches()),
]
