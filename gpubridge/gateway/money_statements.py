"""The money path's transactions on PostgreSQL, each one statement (data-modifying CTEs).

Admit: ``WITH held AS (UPDATE accounts ... guarded ... RETURNING id), entry AS (INSERT INTO
ledger_entries SELECT ... FROM held), job AS (INSERT INTO jobs SELECT ... FROM held) SELECT
job.id FROM job``: a refused hold updates no row, so nothing is inserted and no row comes back.

Settle: ``WITH acct AS (SELECT ... FOR NO KEY UPDATE), fin AS (UPDATE jobs ... guarded ...
WHERE EXISTS (acct) RETURNING id, pg_notify(...)), entries AS (INSERT ... SELECT ... FROM fin),
acc AS (UPDATE accounts ... WHERE EXISTS (fin)) SELECT fin.id FROM fin``: the account row is
locked before the job row, in the order every other money transaction takes them, and a job
that is no longer running gets neither entries nor a balance change. A job that nobody on
another replica can be waiting for ends without the notice: besides its own cost, a notice
makes its transaction take a lock, cluster-wide, that it holds until its commit is done, so
PostgreSQL commits the transactions that notify one at a time.

The statements are built once per shape and reuse the ledger's and the store's guarded
statements, so the rules (balance, daily limit, status guards) are written once.
"""

from __future__ import annotations

import functools
from datetime import date
from typing import Any

from sqlalchemy import Select, bindparam, exists, insert, select, union_all
from sqlalchemy.sql.selectable import CTE

from gpubridge.db.tables import accounts, jobs, ledger_entries
from gpubridge.jobs import store
from gpubridge.jobs.notifications import queued_notice, status_notice
from gpubridge.payments import ledger

_ENTRY_COLUMNS = [c for c in ledger_entries.c if c.name != "id"]
_JOB_COLUMNS = list(jobs.c)
_JOB_DEFAULTS: dict[str, Any] = {"expired": 0, "discount_percent": 0}
_JOB_KEYS = [(f"j_{c.name}", c.name) for c in _JOB_COLUMNS]
"""Each job column's bind name, made once rather than on every admit."""


@functools.cache
def _entry_keys(index: int) -> dict[str, str]:
    """The bind name of each column of ledger entry ``index`` (``e<index>_<column>``)."""
    return {c.name: f"e{index}_{c.name}" for c in _ENTRY_COLUMNS}


def _put_entry(params: dict[str, Any], index: int, entry: ledger.LedgerEntry) -> None:
    keys = _entry_keys(index)
    for name, value in entry.items():
        params[keys.get(name) or f"e{index}_{name}"] = value


def _entries_from(source: CTE, count: int) -> CTE:
    """An INSERT of ``count`` ledger entries (binds ``e<i>_<column>``), one per row of
    ``source`` (which returns one row or none)."""
    rows = [
        select(*(bindparam(f"e{i}_{c.name}", type_=c.type) for c in _ENTRY_COLUMNS)).select_from(
            source
        )
        for i in range(count)
    ]
    chosen = rows[0] if count == 1 else union_all(*rows)
    return (
        insert(ledger_entries)
        .from_select([c.name for c in _ENTRY_COLUMNS], chosen)
        .returning(ledger_entries.c.id)
        .cte("entries")
    )


@functools.cache
def admit_statement(queued: bool) -> Select[Any]:
    """Hold, its entry and the job, in one statement (a queued job also notifies)."""
    held = ledger.HOLD.returning(accounts.c.id).cte("held")
    entry = _entries_from(held, 1)
    row = select(*(bindparam(f"j_{c.name}", type_=c.type) for c in _JOB_COLUMNS)).select_from(held)
    inserted = insert(jobs).from_select([c.name for c in _JOB_COLUMNS], row)
    returned = (
        inserted.returning(jobs.c.id, queued_notice()) if queued else inserted.returning(jobs.c.id)
    )
    job = returned.cte("job")
    return select(job.c.id).add_cte(entry)


def admit_params(
    account: str,
    micros: int,
    today: date,
    entry: ledger.LedgerEntry,
    values: dict[str, Any],
) -> dict[str, Any]:
    params: dict[str, Any] = {"account": account, "micros": micros, "today": today}
    _put_entry(params, 0, entry)
    job = {**_JOB_DEFAULTS, **values}
    for key, name in _JOB_KEYS:
        params[key] = job.get(name)
    return params


@functools.cache
def settle_statement(entry_count: int, notify: bool = True) -> Select[Any]:
    """End the running job, its ``entry_count`` ledger entries and the account's balance
    change, in one statement that also notifies listeners of the end (unless not ``notify``)."""
    acct = (
        select(accounts.c.id)
        .where(accounts.c.id == bindparam("account"))
        .with_for_update(key_share=True)
        .cte("acct")
    )
    finish = store.FINISH_RUNNING.where(exists(select(acct.c.id)))
    fin = (
        finish.returning(jobs.c.id, status_notice()) if notify else finish.returning(jobs.c.id)
    ).cte("fin")
    entries = _entries_from(fin, entry_count)
    balance = ledger.GIVE_BACK.where(exists(select(fin.c.id))).returning(accounts.c.id).cte("acc")
    return select(fin.c.id).add_cte(entries, balance)


def settle_params(
    finish: dict[str, Any],
    notice: str | None,
    entries: list[ledger.LedgerEntry],
    give_back: dict[str, Any],
) -> dict[str, Any]:
    """The values of ``settle_statement``; ``notice`` None for the statement without one."""
    params = {**finish, **give_back}
    if notice is not None:
        params["notice"] = notice
    for i, entry in enumerate(entries):
        _put_entry(params, i, entry)
    return params
