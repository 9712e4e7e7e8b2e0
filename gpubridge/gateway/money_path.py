"""The two money transactions of every paid job, each done in one step.

- ``admit``: hold the job's ceiling (a guarded balance update and its ledger entry) and insert
  the job, before any GPU work.
- ``settle``: end a running job (a guarded status update) and capture its cost or refund its
  hold, with the ledger entries and the balance update that go with it.

On SQLite each is a function submitted to the database's single writer (``Writer``), which
commits whatever is queued together: one thread hop and one commit per batch. On PostgreSQL
each is one statement (``money_statements``) that commits by itself, sent through asyncpg
itself (``Database.direct``): one round trip, and the account's row lock is held only while that
statement runs, never across round trips, so one account's concurrent requests do not queue
behind each other's network latency.

Where a transaction needs more than that (media inputs to record, an auto top-up rail that is
on, a SQLite ``file:`` URI that a second connection may not share), it runs as before:
the ledger and store functions inside one ``db.begin()`` transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db import Database
from gpubridge.db.engine import sqlite_file
from gpubridge.db.prepared import Prepared
from gpubridge.db.tables import jobs, ledger_entries
from gpubridge.db.writer import Writer
from gpubridge.gateway import money_statements as sql
from gpubridge.jobs import store
from gpubridge.jobs.notifications import status_payload
from gpubridge.jobs.status import JobStatus
from gpubridge.jobs.store import JobRecord
from gpubridge.payments import ledger
from gpubridge.payments.auto_topup import DISARM, disarm_below_threshold

Extra = Callable[[AsyncConnection], Awaitable[None]]
Funding = Callable[[AsyncConnection, int], Awaitable[None]]
"""Credits the job's hold (given) to its account in the transaction that holds it."""

# The writer's hot statements, compiled once for the SQLite driver (see ``Prepared``).
_HOLD = Prepared(ledger.HOLD)
_INSERT_ENTRY = Prepared(ledger.INSERT_ENTRY, [c.name for c in ledger_entries.c if c.name != "id"])
_INSERT_JOB = Prepared(store.INSERT_JOB, [c.name for c in jobs.c])
_FINISH_RUNNING = Prepared(store.FINISH_RUNNING)
_GIVE_BACK = Prepared(ledger.GIVE_BACK)
_DISARM = Prepared(DISARM)


@dataclass(frozen=True)
class Settled:
    job: JobRecord | None
    """The finished job; None when it was no longer running (cancelled or ended elsewhere),
    and then nothing was charged or refunded."""
    top_up: bool = False
    """This capture took the balance below the account's auto top-up threshold: charge it."""


class MoneyPath:
    """Admits and settles jobs on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.writer = Writer(db.url) if sqlite_file(db.url) is not None else None
        """SQLite's single writer (None for PostgreSQL and a SQLite ``file:`` URI)."""

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()

    # -- admit --------------------------------------------------------------------------
    async def admit(
        self,
        hold_micros: int,
        today: date,
        /,
        *,
        extra: Extra | None = None,
        funding: Funding | None = None,
        on_late: Callable[[JobRecord], None] | None = None,
        **job: Any,
    ) -> JobRecord:
        """Hold ``hold_micros`` on the job's account (the UTC day ``today`` counts toward its
        daily limit) and insert the job (``job``: its column values). ``extra`` runs in the
        same transaction (recording the job's input files), and ``funding`` before the hold
        (credit that only this job may spend). ``on_late`` gets the job when the caller was
        cancelled while the SQLite writer committed it."""
        values, record = store.new_job(**job)
        account = record.account_id
        entry = ledger.hold_entry(account, hold_micros, job_id=record.id)
        if extra is not None or funding is not None:
            return await self._admit_in_transaction(
                hold_micros, today, values, record, extra, funding
            )
        if self.writer is not None:
            hold = {"account": account, "micros": hold_micros, "today": today}
            row = {**store.NEW_JOB_ROW, **values}

            def work(conn: Connection) -> JobRecord:
                if _HOLD.run(conn, hold) != 1:
                    refusal = conn.execute(ledger.refusal_query(account, today)).first()
                    raise ledger.hold_refusal(refusal, hold_micros)
                _INSERT_ENTRY.run(conn, entry)
                _INSERT_JOB.run(conn, row)
                return record

            return await self.writer.run(work, on_late=on_late)
        if self.db.direct is not None:
            params = sql.admit_params(account, hold_micros, today, entry, values)
            queued = record.status == JobStatus.PENDING
            if await self.db.direct.fetchrow(sql.admit_statement(queued), params) is None:
                async with self.db.connect() as conn:
                    refusal = (await conn.execute(ledger.refusal_query(account, today))).first()
                raise ledger.hold_refusal(refusal, hold_micros)
            return record
        return await self._admit_in_transaction(hold_micros, today, values, record, None, None)

    async def _admit_in_transaction(
        self,
        hold_micros: int,
        today: date,
        values: dict[str, Any],
        record: JobRecord,
        extra: Extra | None,
        funding: Funding | None,
    ) -> JobRecord:
        async with self.db.begin() as conn:
            if funding is not None:
                await funding(conn, hold_micros)
            await ledger.hold(conn, record.account_id, hold_micros, job_id=record.id, today=today)
            await store.insert_job(conn, **values)
            if extra is not None:
                await extra(conn)
        return record

    # -- settle -------------------------------------------------------------------------
    async def settle(
        self,
        job: JobRecord,
        status: JobStatus,
        *,
        output: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
        cost_micros: int = 0,
        backend: str | None = None,
        memo: str = "",
        auto_topup: bool = False,
        tell_replicas: bool = True,
    ) -> Settled:
        """End a running ``job`` with ``status``: a completed job is charged ``cost_micros``
        of its hold (the rest released), any other gets its whole hold back (``memo`` says
        why). With ``auto_topup`` (the rail is on), a capture also claims a crossing of the
        account's auto top-up threshold. Without ``tell_replicas`` (nobody elsewhere can be
        waiting for the job) the one-statement path sends no notice of the end."""
        values = store.finished_values(
            job,
            status,
            output=output,
            error=error,
            usage=usage,
            cost_micros=cost_micros,
            backend=backend,
        )
        finished = store.finished_record(job, values)
        captured = status == JobStatus.COMPLETED
        account = job.account_id
        if captured:
            entries = ledger.capture_entries(
                account, job_id=job.id, held_micros=job.hold_micros, cost=cost_micros
            )
        else:
            entries = [
                ledger.refund_entry(account, job_id=job.id, held_micros=job.hold_micros, memo=memo)
            ]
        spent = cost_micros if captured else 0
        give_back = ledger.give_back(account, job.hold_micros, spent, job.created_at.date())
        finish = {"job": job.id, **{f"new_{name}": value for name, value in values.items()}}
        if self.writer is not None:

            def work(conn: Connection) -> Settled:
                if _FINISH_RUNNING.run(conn, finish) != 1:
                    return Settled(None)
                _INSERT_ENTRY.run_many(conn, entries)
                _GIVE_BACK.run(conn, give_back)
                top_up = auto_topup and captured
                top_up = top_up and _DISARM.run(conn, {"account": account}) == 1
                return Settled(finished, top_up)

            return await self.writer.run(work)
        if self.db.direct is not None and not (auto_topup and captured):
            notice = status_payload(job.id, status) if tell_replicas else None
            params = sql.settle_params(finish, notice, entries, give_back)
            statement = sql.settle_statement(len(entries), tell_replicas)
            done = await self.db.direct.fetchrow(statement, params)
            return Settled(finished if done is not None else None)
        return await self._settle_in_transaction(
            job, status, values, entries, give_back, auto_topup and captured
        )

    async def _settle_in_transaction(
        self,
        job: JobRecord,
        status: JobStatus,
        values: dict[str, Any],
        entries: list[ledger.LedgerEntry],
        give_back: dict[str, Any],
        auto_topup: bool,
    ) -> Settled:
        async with self.db.begin() as conn:
            await ledger.lock_account(conn, job.account_id)
            finished = await store.finish_job(
                conn,
                job,
                status,
                output=values["output"],
                error=values["error"],
                usage=values["usage"],
                cost_micros=values["cost_micros"],
                backend=values["backend"],
            )
            if finished is None:
                return Settled(None)
            await conn.execute(ledger.INSERT_ENTRY, entries)
            await conn.execute(ledger.GIVE_BACK, give_back)
            top_up = auto_topup and await disarm_below_threshold(conn, job.account_id)
        return Settled(finished, top_up)
