"""The dispatcher: claims pending jobs from the store and runs them with bounded concurrency.

Several gateway replicas may run a dispatcher against one PostgreSQL database; each job is
claimed exactly once (see ``store.claim_pending``). A job ended by another replica or process
(a cancel) stops here too: on PostgreSQL its notice says so at once, and a watch that looks
every ``watch_s`` at the jobs running here catches what no notice told (SQLite has none).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gpubridge.db import Database
from gpubridge.jobs import leases
from gpubridge.jobs.status import JobStatus
from gpubridge.jobs.store import JobRecord, claim_pending, ended_elsewhere

log = logging.getLogger(__name__)

Runner = Callable[[JobRecord], Awaitable[Any]]
Maintenance = Callable[[], Awaitable[None]]
LeaseInfo = Callable[[], dict[str, Any]]


class Dispatcher:
    def __init__(
        self,
        db: Database,
        runner: Runner,
        *,
        max_concurrency: int,
        poll_s: float,
        capacity: Mapping[str, int] | Callable[[], Mapping[str, int]] | None = None,
        maintenance: Maintenance | None = None,
        maintenance_every_s: float = 30.0,
        lease_ttl_s: float = 30.0,
        lease_info: LeaseInfo | None = None,
        watch_s: float = 1.0,
    ) -> None:
        self.db = db
        self.runner = runner
        self.worker_id = f"gateway-{socket.gethostname()[:30]}-{uuid.uuid4().hex[:12]}"
        """This replica: the holder its jobs' ``claimed_by`` and its lease name."""
        self.lease_ttl_s = lease_ttl_s
        self.lease_info = lease_info
        self.max_concurrency = max_concurrency
        self.capacity = capacity
        """Jobs of each service this replica may run at once (its backends' concurrency), or a
        function giving them now: it claims no more, so other replicas take the rest."""
        self._per_service: Counter[str] = Counter()
        self.poll_s = poll_s
        self.maintenance = maintenance
        self.maintenance_every_s = maintenance_every_s
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._by_job: dict[str, asyncio.Task[Any]] = {}
        self._jobs: dict[str, JobRecord] = {}
        self._starved = False
        self.watch_s = watch_s
        """How often to look for running jobs that someone else ended (0: never)."""

    async def renew_lease(self) -> None:
        """Write (or extend) this replica's lease: its running jobs are alive while it lasts."""
        info = self.lease_info() if self.lease_info is not None else {}
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "jobs": len(self._running),
            **info,
        }
        async with self.db.begin() as conn:
            await leases.renew(conn, self.worker_id, self.lease_ttl_s, info)

    async def release_lease(self) -> None:
        async with self.db.begin() as conn:
            await leases.release(conn, self.worker_id)

    def start(self) -> None:
        """Claim and run jobs in the background (renew the lease first: ``renew_lease``)."""
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="dispatcher-claim"),
            asyncio.create_task(self._lease_loop(), name="dispatcher-lease"),
        ]
        if self.maintenance is not None:
            self._tasks.append(asyncio.create_task(self._maintenance_loop(), name="dispatcher-gc"))
        if self.watch_s > 0:
            self._tasks.append(asyncio.create_task(self._watch_loop(), name="dispatcher-watch"))

    def notify(self) -> None:
        """A job was queued: claim now rather than at the next poll."""
        self._wake.set()

    def spawn(self, job: JobRecord) -> asyncio.Task[Any]:
        """Run a job this process already claimed (e.g. a sync job claimed at creation)."""
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self._running.add(task)
        self._by_job[job.id] = task
        self._jobs[job.id] = job
        self._per_service[job.service] += 1
        task.add_done_callback(functools.partial(self._forget, job_id=job.id, service=job.service))
        return task

    def cancel_local(self, job_id: str) -> bool:
        """Cancel a job's task if it runs in this process."""
        task = self._by_job.get(job_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    def task_for(self, job_id: str) -> asyncio.Task[Any] | None:
        return self._by_job.get(job_id)

    async def stop(self, grace_s: float = 0.0) -> list[JobRecord]:
        """Stop claiming; give running jobs ``grace_s`` to finish, then cancel the rest (their
        work stops). Returns the jobs that were cancelled, for the caller to settle."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._running and grace_s > 0:
            await asyncio.wait(list(self._running), timeout=grace_s)
        interrupted = [self._jobs[j] for j, t in self._by_job.items() if not t.done()]
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        return interrupted

    def _forget(self, task: asyncio.Task[Any], *, job_id: str, service: str) -> None:
        self._running.discard(task)
        self._per_service[service] -= 1
        if self._starved:
            # The last claim was cut short by the concurrency bound: queued jobs may wait.
            self._wake.set()
        if self._by_job.get(job_id) is task:
            del self._by_job[job_id]
            self._jobs.pop(job_id, None)

    async def _run(self, job: JobRecord) -> Any:
        try:
            return await self.runner(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job runner crashed", extra={"job_id": job.id})
            return None

    async def _claim_loop(self) -> None:
        while True:
            # Cleared before the claim, not after: a job queued while it runs wakes the next.
            self._wake.clear()
            try:
                free = self.max_concurrency - len(self._running)
                per_service = self._free_per_service()
                if per_service is not None:
                    free = min(free, sum(per_service.values()))
                self._starved = free <= 0
                if free > 0:
                    async with self.db.begin() as conn:
                        claimed = await claim_pending(
                            conn,
                            self.worker_id,
                            free,
                            skip_locked=self.db.is_postgres,
                            per_service=per_service,
                        )
                    for job in claimed:
                        self.spawn(job)
                    if len(claimed) == free:
                        self._starved = True
                        continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claiming jobs failed")
            try:
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _free_per_service(self) -> dict[str, int] | None:
        if self.capacity is None:
            return None
        capacity = self.capacity() if callable(self.capacity) else self.capacity
        free = {k: n - self._per_service[k] for k, n in capacity.items()}
        return {k: n for k, n in free.items() if n > 0}

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl_s / 3)
            try:
                await self.renew_lease()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("renewing this replica's lease failed")

    async def _watch_loop(self) -> None:
        """Stop the work of jobs running here that someone else ended. A cancel stops at
        once; another end (failed as lost, put back) only when seen twice, since this
        process's own runner may have just ended the job and not yet returned."""
        seen: set[str] = set()
        while True:
            await asyncio.sleep(self.watch_s)
            running = [job_id for job_id, task in self._by_job.items() if not task.done()]
            if not running:
                seen.clear()
                continue
            try:
                async with self.db.connect() as conn:
                    ended = await ended_elsewhere(conn, running, self.worker_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watching running jobs failed")
                continue
            for job_id, status in ended.items():
                stop = status == JobStatus.CANCELLED or job_id in seen
                if stop and self.cancel_local(job_id):
                    log.info("job ended elsewhere; its work stops", extra={"job_id": job_id})
            seen = set(ended)

    async def _maintenance_loop(self) -> None:
        assert self.maintenance is not None
        while True:
            try:
                await self.maintenance()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job maintenance failed")
            await asyncio.sleep(self.maintenance_every_s)
