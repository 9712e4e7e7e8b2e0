"""An account's recent usage: spending per day and service, and its jobs per service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.jobs.usage import usage_by_day
from gpubridge.payments.accounts import Account

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
    """Per service with spending (alphabetical), micro-USD spent on each of ``days``."""
    services: list[ServiceUsage]
    """Per service with jobs in the period, the biggest spender first."""

    @property
    def total_micros(self) -> int:
        return sum(sum(values) for values in self.spending.values())


async def usage_report(
    db: Database, account: Account, days: int = USAGE_DAYS, today: date | None = None
) -> UsageReport:
    """The jobs ``account`` created in the last ``days`` UTC days, today included."""
    last = today or utcnow().date()
    period = [last - timedelta(days=n) for n in range(days - 1, -1, -1)]
    since = datetime.combine(period[0], time(), tzinfo=UTC)
    async with db.connect() as conn:
        rows = await usage_by_day(conn, account.id, since)
    index = {day: n for n, day in enumerate(period)}
    spending: dict[str, list[int]] = {}
    totals: dict[str, list[int]] = {}
    for row in rows:
        if row.spent_micros and row.day in index:
            spending.setdefault(row.service, [0] * days)[index[row.day]] += row.spent_micros
        total = totals.setdefault(row.service, [0, 0, 0, 0, 0])
        for n, value in enumerate(
            (row.jobs, row.completed, row.failed, row.spent_micros, row.execution_ms)
        ):
            total[n] += value
    services = [ServiceUsage(name, *values) for name, values in totals.items()]
    services.sort(key=lambda s: (-s.spent_micros, -s.jobs, s.service))
    return UsageReport(period, dict(sorted(spending.items())), services)
