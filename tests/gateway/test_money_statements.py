"""PostgreSQL's money statements: one statement each, every parameter bound, the account row
locked before the job row."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql

from gpubridge.db.engine import utcnow
from gpubridge.gateway import money_statements as sql
from gpubridge.jobs import store
from gpubridge.jobs.status import JobStatus
from gpubridge.payments import ledger

DIALECT = postgresql.asyncpg.dialect()  # type: ignore[attr-defined]


def needed(compiled: Any) -> set[str]:
    """The parameters a statement cannot run without (those it sets itself aside)."""
    return {bind.key for bind in compiled.binds.values() if bind.required}


def a_job() -> store.JobRecord:
    _, record = store.new_job(
        id=str(uuid.uuid4()),
        account_id="acct",
        service="llm-4090",
        model="m",
        input={},
        status=JobStatus.RUNNING.value,
        hold_micros=4_000,
    )
    return record


@pytest.mark.parametrize("queued", [False, True])
def test_admission_is_one_statement_binding_every_parameter_it_names(queued):
    values, record = store.new_job(
        id=str(uuid.uuid4()),
        account_id="acct",
        service="s",
        model="m",
        input={"a": 1},
        status=(JobStatus.PENDING if queued else JobStatus.RUNNING).value,
        hold_micros=10,
    )
    compiled = sql.admit_statement(queued).compile(dialect=DIALECT)
    text = str(compiled)
    assert text.startswith("WITH held AS") and text.count(";") == 0
    assert ("pg_notify" in text) is queued
    entry = ledger.hold_entry("acct", 10, job_id=record.id)
    params = sql.admit_params("acct", 10, utcnow().date(), entry, values)
    assert needed(compiled) == set(params)


@pytest.mark.parametrize("notify", [True, False])
@pytest.mark.parametrize("entries", [1, 2, 3])
def test_settlement_is_one_statement_binding_every_parameter_it_names(entries, notify):
    job = a_job()
    values = store.finished_values(job, JobStatus.COMPLETED, cost_micros=1)
    finish = {"job": job.id, **{f"new_{k}": v for k, v in values.items()}}
    rows = ledger.capture_entries("acct", job_id=job.id, held_micros=4_000, cost=1)[:entries]
    give_back = ledger.give_back("acct", 4_000, 1, job.created_at.date())
    compiled = sql.settle_statement(entries, notify).compile(dialect=DIALECT)
    assert ("pg_notify" in str(compiled)) is notify
    params = sql.settle_params(finish, "{}" if notify else None, rows, give_back)
    assert needed(compiled) == set(params)


def test_settlement_locks_the_account_before_it_touches_the_job():
    text = str(sql.settle_statement(2).compile(dialect=DIALECT))
    lock = text.index("FOR NO KEY UPDATE")
    finish = text.index("UPDATE jobs")
    assert lock < finish
    # The job update waits for the lock; the balance changes only for a job that ended.
    assert "EXISTS (SELECT acct.id" in text[finish:]
    assert "EXISTS (SELECT fin.id" in text[text.index("UPDATE accounts") :]
