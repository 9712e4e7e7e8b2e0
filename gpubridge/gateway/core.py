"""The use cases both front doors share: quote, submit, get, cancel, stream."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio

from gpubridge.catalog import Catalog
from gpubridge.catalog.availability import Availability
from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.engines.router import Router
from gpubridge.errors import (
    Conflict,
    Expired,
    NotFound,
)
from gpubridge.gateway.money_path import MoneyPath
from gpubridge.gateway.notices import Notices, end_event, task_outcome
from gpubridge.gateway.paid_intake import PaidIntake
from gpubridge.gateway.payment_rails import PaymentRails
from gpubridge.gateway.remote_workers import RemoteWorkers
from gpubridge.gateway.runner import JobRunner
from gpubridge.gateway.upkeep import Upkeep, lease_info
from gpubridge.gateway.usage import UsageReport, usage_report
from gpubridge.gateway.views import job_view
from gpubridge.gateway.warmup import Warmup
from gpubridge.gateway.worker_metrics import WorkerCollector
from gpubridge.jobs import store
from gpubridge.jobs.blobs import blob_store_from_settings
from gpubridge.jobs.dispatcher import Dispatcher
from gpubridge.jobs.events import JobEvents
from gpubridge.jobs.files import FileStore, StoredFile
from gpubridge.jobs.media import MediaFetcher
from gpubridge.jobs.status import ACTIVE, JobStatus
from gpubridge.jobs.store import JobRecord
from gpubridge.jobs.webhooks import WebhookSender
from gpubridge.money import micros_to_usd
from gpubridge.payments import ledger
from gpubridge.payments.accounts import Account, Accounts
from gpubridge.payments.crypto_topups import CryptoTopups
from gpubridge.payments.ledger_check import LedgerReport
from gpubridge.payments.pricing import tier_for
from gpubridge.payments.stripe_topups import CardTopups
from gpubridge.payments.x402 import X402
from gpubridge.settings import Settings

log = logging.getLogger(__name__)

ABANDON_CANCEL_S = 10.0
"""The most time given to cancelling the job of a caller that went away."""


class Gateway(PaidIntake):
    """Validates, prices, charges, queues, runs and reports jobs (taking them in: ``Intake``)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        catalog: Catalog,
        accounts: Accounts,
        router: Router,
        webhooks: WebhookSender,
    ) -> None:
        self.settings = settings
        self.db = db
        self.catalog = catalog
        self.accounts = accounts
        self.router = router
        self.webhooks = webhooks
        self.events = JobEvents()
        self.files = FileStore(
            db, blob_store_from_settings(settings), public_url=settings.public_url
        )
        self.media = MediaFetcher(
            max_bytes=settings.media_max_bytes,
            timeout_s=settings.media_timeout_s,
            max_redirects=settings.media_max_redirects,
            allow_private=settings.allow_private_urls,
        )
        self.card_topups = CardTopups.from_settings(settings, db)
        self.crypto_topups = CryptoTopups.from_settings(settings, db)
        self.money = MoneyPath(db)
        self.runner = JobRunner(
            settings,
            db,
            catalog,
            router,
            webhooks,
            self.events,
            files=self.files,
            money=self.money,
            auto_topups=self.card_topups.auto,
        )
        total = sum(b.concurrency for s in catalog.services.values() for b in s.backends)
        self.dispatcher = Dispatcher(
            db,
            self.runner.run,
            max_concurrency=max(1, total),
            capacity=self._capacity,
            poll_s=settings.dispatcher_poll_s,
            maintenance=self.maintenance,
            lease_ttl_s=settings.lease_ttl_s,
            lease_info=lambda: lease_info(router),
        )
        self.notices = Notices(db, self.events, self.dispatcher, public_url=settings.public_url)
        workers = router.registry.workers
        if workers is not None:
            self.runner.metrics.registry.register(WorkerCollector(workers))
        self.remote_workers = RemoteWorkers(db, workers)
        self.x402 = X402.from_settings(settings, db)
        self.warmup = Warmup(catalog, router.registry)
        self.availability = Availability(catalog, router.registry)
        self.started_at = utcnow()
        """When this gateway took its catalog and payment terms (discovery's lastUpdated)."""
        self.upkeep = Upkeep(
            settings,
            db,
            catalog,
            self.runner,
            self.dispatcher,
            self.files,
            x402=self.x402,
            crypto_topups=self.crypto_topups,
        )
        self.payment_rails = PaymentRails(settings, self.x402, self.card_topups, self.crypto_topups)

    async def start(self) -> None:
        self.payment_rails.log_startup()
        await self.notices.start()
        await self.dispatcher.renew_lease()
        self.dispatcher.start()
        self.warmup.start()

    async def stop(self) -> None:
        """Stop at once and leave nothing hanging: running jobs get the shutdown grace to
        finish; the others stop, and are requeued if no backend had taken them yet (async
        jobs) or failed and refunded."""
        await self.warmup.stop()
        await self.upkeep.shut_down()
        await self.notices.stop()
        await self.runner.close()
        await self.money.close()
        await self.media.aclose()
        await self.card_topups.close()
        await self.crypto_topups.close()
        if self.x402 is not None:
            await self.x402.close()

    async def wait(
        self, job: JobRecord, timeout_s: float, poll_s: float | None = None
    ) -> JobRecord:
        """Wait up to ``timeout_s`` for a job to end; return its latest state.

        A job running here is awaited; another wakes the wait with its status event (from
        this replica's runner, or another replica's notice), and the store is read every
        ``poll_s`` too (by default often where no notice would come, now and then where one
        will)."""
        try:
            async with asyncio.timeout(timeout_s):
                task = self.dispatcher.task_for(job.id)
                if task is not None:
                    finished = await task_outcome(task)
                    if isinstance(finished, JobRecord):
                        return finished
                async with self.events.subscribe(job.id, tokens=False) as queue:
                    job = await self.get(job.id)
                    while not job.status.is_terminal:
                        await end_event(queue, poll_s or self.notices.wait_poll_s)
                        job = await self.get(job.id)
        except TimeoutError:
            pass
        return await self.get(job.id)

    async def wait_to_answer(self, job: JobRecord, timeout_s: float, *, unseen: bool) -> JobRecord:
        """``wait`` for a job that its caller just submitted, to answer with it if it ends in
        time. While the caller waits, the end of an ``unseen`` job (``Submitted.unseen``) is
        not announced to other replicas: nobody can wait for it there, since its id is first
        shown in this answer. Once the wait gives up, the id is about to be shown (a 202), and
        the job's end is announced as usual."""
        if not unseen:
            return await self.wait(job, timeout_s)
        self.runner.waited_here.add(job.id)
        try:
            return await self.wait(job, timeout_s)
        finally:
            self.runner.waited_here.discard(job.id)

    # -- read ---------------------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord:
        async with self.db.connect() as conn:
            job = await store.get_job(conn, job_id) if _is_uuid(job_id) else None
        if job is None:
            raise NotFound(f"no job {job_id}", code="job_not_found")
        if job.expired or (
            job.completed_at is not None
            and utcnow() - job.completed_at > timedelta(seconds=self.settings.result_ttl_s)
        ):
            raise Expired("this job's results expired 24 hours after completion", code="expired")
        return job

    async def file(self, file_id: str) -> tuple[StoredFile, bytes]:
        """A job's file (an output, or a fetched input) until it expires."""
        return await self.files.read(file_id)

    async def list_jobs(
        self, account: Account, limit: int, offset: int
    ) -> tuple[list[JobRecord], int]:
        async with self.db.connect() as conn:
            return await store.list_jobs(conn, account.id, limit, offset)

    async def usage(self, account: Account) -> UsageReport:
        """The account's last 30 days: spending per day and service, jobs per service."""
        return await usage_report(self.db, account)

    async def balance(self, account: Account) -> dict[str, Any]:
        async with self.db.connect() as conn:
            summary = await ledger.account_summary(conn, account.id)
        tier = tier_for(summary["lifetime_spend_micros"])
        return {
            "balance": micros_to_usd(summary["balance_micros"]),
            "email": summary["email"],
            "daily_spend": micros_to_usd(summary["daily_spend_micros"]),
            "daily_limit": micros_to_usd(summary["daily_limit_micros"]),
            "lifetime_spend": micros_to_usd(summary["lifetime_spend_micros"]),
            "volume_discount": {"tier": tier.name, "discount_percent": tier.percent},
        }

    async def grant(self, email: str, micros: int, memo: str = "operator grant") -> int:
        """Operator top-up without a payment provider; returns the new balance."""
        account = await self.accounts.by_email(email)
        async with self.db.begin() as conn:
            await ledger.credit(conn, account.id, micros, house="grants", kind="grant", memo=memo)
            return await ledger.available_balance(conn, account.id)

    # -- cancel -------------------------------------------------------------------------
    async def abandon(self, account: Account, job_id: str) -> None:
        """Cancel (and refund) the job of a caller that went away, unless it already ended.
        Shielded: the caller's own cancellation does not stop it part way."""
        with anyio.move_on_after(ABANDON_CANCEL_S, shield=True):
            try:
                await self.cancel(account, job_id)
            except (Conflict, NotFound):
                return  # it ended meanwhile
            log.info("caller went away; its job was cancelled", extra={"job_id": job_id})

    async def cancel(self, account: Account, job_id: str) -> JobRecord:
        """Cancel a pending or running job and refund its hold in full."""
        async with self.db.begin() as conn:
            await ledger.lock_account(conn, account.id)
            job = await store.get_job(conn, job_id) if _is_uuid(job_id) else None
            if job is None or job.account_id != account.id:
                raise NotFound(f"no job {job_id}", code="job_not_found")
            if job.status.is_terminal:
                raise Conflict(f"job is already {job.status.value}", code="job_not_cancellable")
            cancelled = await store.finish_job(
                conn,
                job,
                JobStatus.CANCELLED,
                error={"code": "cancelled", "message": "cancelled by the caller"},
                from_statuses=ACTIVE,
            )
            if cancelled is None:
                raise Conflict(
                    "job finished before it could be cancelled", code="job_not_cancellable"
                )
            await ledger.refund(
                conn,
                account.id,
                job_id=job.id,
                held_micros=job.hold_micros,
                held_on=job.created_at.date(),
                memo="cancelled",
            )
        self.dispatcher.cancel_local(job.id)
        self.runner.announce(cancelled)
        return cancelled

    # -- stream -------------------------------------------------------------------------
    async def stream(self, job_id: str, poll_s: float = 1.0) -> AsyncIterator[dict[str, Any]]:
        """Live events of a job until it ends: status changes, progress and tokens."""
        async with self.events.subscribe(job_id) as queue:
            job = await self.get(job_id)
            if job.status.is_terminal:
                # It may have run and ended while it was being read: what it sent meanwhile
                # (its tokens) is queued, in order; pass that on before its end.
                while not queue.empty():
                    item = queue.get_nowait()
                    if item["event"] == "status" and JobStatus(item["data"]["status"]).is_terminal:
                        break
                    yield item
            yield {"event": "status", "data": job_view(job, self.settings.public_url)}
            last_status = job.status
            while not last_status.is_terminal:
                try:
                    async with asyncio.timeout(poll_s):
                        item = await queue.get()
                except TimeoutError:
                    # The job may run on another replica (its end comes as a notice on
                    # PostgreSQL, its progress does not): fall back to the store.
                    job = await self.get(job_id)
                    if job.status != last_status or job.status.is_terminal:
                        last_status = job.status
                        yield {"event": "status", "data": job_view(job, self.settings.public_url)}
                    continue
                yield item
                status = item["data"].get("status") if item["event"] == "status" else None
                if status is not None:
                    last_status = JobStatus(status)

    # -- maintenance ----------------------------------------------------------------------
    async def check_ledger(self) -> LedgerReport:
        """Prove the ledger's invariants (see ``ledger_check``); the result shows in /metrics."""
        return await self.upkeep.check_ledger()

    async def maintenance(self) -> None:
        """Expire old outputs; requeue or refund the jobs of replicas that vanished; now and
        then, prove the ledger."""
        await self.upkeep.run()
        await self.resolve_pending_payments()


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
