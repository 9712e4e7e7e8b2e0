"""Keeping the house in order: expired outputs, jobs of vanished replicas, jobs left at
shutdown, payments to reconcile, and the ledger's proof."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from gpubridge.catalog import Catalog
from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.engines.router import Router
from gpubridge.gateway.runner import JobRunner
from gpubridge.jobs import leases, store
from gpubridge.jobs.dispatcher import Dispatcher
from gpubridge.jobs.files import FileStore
from gpubridge.jobs.store import JobRecord
from gpubridge.payments.crypto_topups import CryptoTopups
from gpubridge.payments.ledger_check import LedgerReport, check_ledger
from gpubridge.payments.x402 import X402
from gpubridge.settings import Settings

log = logging.getLogger(__name__)


def lease_info(router: Router) -> dict[str, Any]:
    """What a replica's lease reports of it: its worker processes."""
    workers = router.registry.workers
    return {"workers": workers.snapshot() if workers is not None else []}


class Upkeep:
    """The periodic and shutdown work of one replica."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        catalog: Catalog,
        runner: JobRunner,
        dispatcher: Dispatcher,
        files: FileStore,
        *,
        x402: X402 | None,
        crypto_topups: CryptoTopups,
    ) -> None:
        self.settings = settings
        self.db = db
        self.catalog = catalog
        self.runner = runner
        self.dispatcher = dispatcher
        self.files = files
        self.x402 = x402
        self.crypto_topups = crypto_topups
        self.ledger_checked_at: datetime | None = None

    async def run(self) -> None:
        async with self.db.begin() as conn:
            await store.purge_expired_outputs(conn, self.settings.result_ttl_s)
        await self.files.purge_expired()
        await self.recover_orphans()
        if self.x402 is not None:
            await self.x402.reconcile()
        try:
            await self.crypto_topups.watch()
        except Exception:
            log.warning("the USDC top-up watcher could not scan the chain", exc_info=True)
        every = self.settings.ledger_check_every_s
        last = self.ledger_checked_at
        if every and (last is None or (utcnow() - last).total_seconds() >= every):
            report = await self.check_ledger()
            if not report.ok:
                log.error("%s", report.summary())

    async def check_ledger(self) -> LedgerReport:
        async with self.db.connect() as conn:
            report = await check_ledger(conn)
        self.runner.metrics.ledger_checked(report)
        self.ledger_checked_at = utcnow()
        return report

    def _is_async(self, service: str) -> bool:
        return service in self.catalog.services and self.catalog.service(service).mode == "async"

    async def shut_down(self) -> None:
        """Stop at once and leave nothing hanging: running jobs get the shutdown grace to
        finish; the others stop, and are requeued if no backend had taken them yet (async
        jobs) or failed and refunded. Then the lease goes."""
        interrupted = await self.dispatcher.stop(grace_s=self.settings.shutdown_grace_s)
        for job in interrupted:
            started = job.id in self.runner.started
            if not started and self._is_async(job.service):
                async with self.db.begin() as conn:
                    if await leases.requeue(conn, job, "shutdown"):
                        continue
            await self.runner.fail(job, "shutdown", "the server shut down while the job ran")
        self.runner.started.clear()
        await self.dispatcher.release_lease()

    async def recover_orphans(self) -> None:
        """Jobs whose replica's lease lapsed (it crashed): requeued once when they reported no
        progress and their service is async, else failed and refunded."""
        cutoff = utcnow() - timedelta(seconds=self.settings.lease_ttl_s)
        async with self.db.connect() as conn:
            orphans: list[JobRecord] = await leases.orphaned_jobs(conn, started_before=cutoff)
        for job in orphans:
            if self.dispatcher.task_for(job.id) is not None:
                continue  # ours, still running: our lease lapsed (a database outage) but not us
            if self._is_async(job.service) and job.progress is None:
                async with self.db.begin() as conn:
                    if await leases.requeue(conn, job, "worker_lost"):
                        self.dispatcher.notify()
                        continue
            await self.runner.fail(job, "worker_lost", "the process running this job stopped")
        async with self.db.begin() as conn:
            await leases.purge_expired(conn, before=cutoff)
