"""An account's recent usage: spending per day and service, and its jobs per service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.payments.accounts import Account
from gpubridge.payments.spending import daily_spend_by_service, jobs_by_service

USAGE_DAYS = 30


@dataclass(frozen=True)
class ServiceUsage:
    service: str
    jobs: int
    completed: int
    failed: int
    spent_micros: int
    execution_ms: int


@dataclass(frozen=True)
class UsageReport:
    days: list[date]
    """Every UTC day of the period, oldest first, today last (days without spending too)."""
    spending: dict[str, list[int]]
    """Per service (alphabetical), micro-USD spent on each of ``days``."""
    services: list[ServiceUsage]
    """Per service with jobs or spending in the period, the biggest spender first."""

    @property
    def total_micros(self) -> int:
        return sum(sum(values) for values in self.spending.values())


async def usage_report(
    db: Database, account: Account, days: int = USAGE_DAYS, today: date | None = None
) -> UsageReport:
    """The last ``days`` UTC days of ``account``, today included."""
    last = today or utcnow().date()
    period = [last - timedelta(days=n) for n in range(days - 1, -1, -1)]
    since = datetime.combine(period[0], time(), tzinfo=UTC)
    async with db.connect() as conn:
        spent = await daily_spend_by_service(conn, account.id, since)
        counted = await jobs_by_service(conn, account.id, since)
    index = {day: n for n, day in enumerate(period)}
    spending: dict[str, list[int]] = {}
    for row in spent:
        if row.day in index:
            spending.setdefault(row.service, [0] * days)[index[row.day]] += row.micros
    counts = {row.service: row for row in counted}
    services = [
        ServiceUsage(
            service=name,
            jobs=counts[name].jobs if name in counts else 0,
            completed=counts[name].completed if name in counts else 0,
            failed=counts[name].failed if name in counts else 0,
            spent_micros=sum(spending.get(name, ())),
            execution_ms=counts[name].execution_ms if name in counts else 0,
        )
        for name in set(spending) | set(counts)
    ]
    services.sort(key=lambda s: (-s.spent_micros, -s.jobs, s.service))
    return UsageReport(period, dict(sorted(spending.items())), services)
