"""An account's usage report: 30 days of spending per service, and jobs per service."""

from __future__ import annotations

from datetime import timedelta

from gpubridge.gateway.usage import USAGE_DAYS, ServiceUsage, usage_report
from gpubridge.payments.accounts import Account
from tests.jobs.test_usage import TODAY, settled
from tests.payments.test_ledger import funded_account


def account(account_id: str) -> Account:
    return Account(account_id, None, 0, "")


async def test_the_report_has_every_day_of_the_period_and_a_row_per_service(database) -> None:
    owner = await funded_account(database, 10_000_000)
    await settled(database, owner, "llm-4090", TODAY, cost=3_000, execution_ms=500)
    await settled(database, owner, "llm-4090", TODAY - timedelta(days=2), cost=2_000)
    await settled(database, owner, "embedding-l4", TODAY - timedelta(days=29), cost=10_000)
    await settled(database, owner, "caption", TODAY, cost=None)  # refunded: jobs, no spending
    await settled(database, owner, "video", TODAY - timedelta(days=30), cost=70_000)  # too old

    report = await usage_report(database, account(owner), today=TODAY)

    assert len(report.days) == USAGE_DAYS
    assert (report.days[0], report.days[-1]) == (TODAY - timedelta(days=29), TODAY)
    assert list(report.spending) == ["embedding-l4", "llm-4090"]
    llm = report.spending["llm-4090"]
    assert (llm[-1], llm[-3], sum(llm)) == (3_000, 2_000, 5_000)
    assert report.spending["embedding-l4"][0] == 10_000
    assert report.total_micros == 15_000
    assert report.services == [
        ServiceUsage("embedding-l4", 1, 1, 0, 10_000, 0),
        ServiceUsage("llm-4090", 2, 2, 0, 5_000, 500),
        ServiceUsage("caption", 1, 0, 1, 0, 0),
    ]


async def test_an_account_without_jobs_has_an_empty_report(database) -> None:
    owner = await funded_account(database, 1_000_000)
    report = await usage_report(database, account(owner), days=7, today=TODAY)
    assert len(report.days) == 7 and report.spending == {} and report.services == []
    assert report.total_micros == 0
