"""Running claimed jobs: route to a backend, then capture or refund, announce, and deliver
the webhook."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any

from gpubridge.catalog import Catalog, Service
from gpubridge.db import Database
from gpubridge.engines.base import EngineEvent, EngineRequest, OutputFile
from gpubridge.engines.router import Router
from gpubridge.errors import GpubridgeError
from gpubridge.gateway.metrics import GatewayMetrics
from gpubridge.gateway.money_path import MoneyPath
from gpubridge.gateway.views import job_view
from gpubridge.jobs import store
from gpubridge.jobs.events import JobEvents
from gpubridge.jobs.files import FileStore, expiry
from gpubridge.jobs.media import media_fields
from gpubridge.jobs.status import JobStatus
from gpubridge.jobs.store import JobRecord
from gpubridge.jobs.webhooks import WebhookSender
from gpubridge.payments import ledger
from gpubridge.payments.auto_topup import AutoTopups
from gpubridge.payments.pricing import discounted
from gpubridge.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_WRITE_EVERY_S = 1.0


class JobRunner:
    """Runs one claimed job at a time per call; shared by the dispatcher and the gateway."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        catalog: Catalog,
        router: Router,
        webhooks: WebhookSender,
        events: JobEvents,
        *,
        files: FileStore,
        money: MoneyPath,
        auto_topups: AutoTopups | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.catalog = catalog
        self.router = router
        self.webhooks = webhooks
        self.events = events
        self.files = files
        self.money = money
        self.auto_topups = auto_topups
        self.metrics = metrics or GatewayMetrics()
        self._background: set[asyncio.Task[Any]] = set()
        self.started: set[str] = set()
        """Jobs of this process that a backend has taken (the others still wait for a slot)."""
        self.waited_here: set[str] = set()
        """Jobs whose id nobody has seen, whose caller waits here for the answer that will show
        it: no other replica can be waiting for their end, so it is not announced there."""

    async def close(self) -> None:
        """Stop webhook deliveries still under way."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def run(self, job: JobRecord) -> JobRecord | None:
        """Run a claimed job on its service's backends, then capture or refund.

        A job cancelled here (cancel, shutdown) stays in ``started`` if a backend had taken it,
        for a shutdown to tell the jobs it may requeue from those it must refund."""
        try:
            finished = await self._run(job)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self.started.discard(job.id)
            raise
        self.started.discard(job.id)
        return finished

    async def _run(self, job: JobRecord) -> JobRecord | None:
        service = self.catalog.service(job.service)
        model = service.model(job.model) or service.default_model
        self.events.publish(job.id, "status", {"status": JobStatus.RUNNING.value})
        progress = _ProgressWriter(self, job.id)
        try:
            async with asyncio.timeout(self._time_limit_s(service)):
                media = await self.files.job_inputs(job.id) if media_fields(job.input) else {}
                request = EngineRequest(job.id, service.key, model.ref(), job.input, media)
                routed = await self.router.execute(
                    service.backends,
                    request,
                    progress.emit,
                    job.priority,
                    on_start=lambda: self.started.add(job.id),
                )
                output = await self._store_files(job.id, routed.result.output)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            return await self.fail(job, "timeout", "the job ran past its time limit")
        except GpubridgeError as exc:
            return await self.fail(job, exc.code, exc.message, **exc.details)
        except Exception as exc:
            log.exception("job failed unexpectedly", extra={"job_id": job.id})
            return await self.fail(job, "internal_error", f"{type(exc).__name__}: {exc}")
        usage = routed.result.usage
        price = service.price_for(model)
        metered = discounted(self.catalog.actual_cost(price, usage), job.discount_percent)
        if metered > job.hold_micros:
            # The hold is the job's ceiling, so this means the ceiling missed something.
            log.warning(
                "metered usage exceeds the job's hold; charging the hold",
                extra={
                    "job_id": job.id,
                    "service": service.key,
                    "metered_micros": metered,
                    "hold_micros": job.hold_micros,
                    "usage": _usage_dict(usage),
                },
            )
        cost = min(metered, job.hold_micros)
        auto_topup = self.auto_topups is not None and self.auto_topups.active
        settled = await self.money.settle(
            job,
            JobStatus.COMPLETED,
            output=output,
            usage=_usage_dict(usage),
            cost_micros=cost,
            backend=routed.backend,
            auto_topup=auto_topup,
            tell_replicas=job.id not in self.waited_here,
        )
        if settled.top_up and self.auto_topups is not None:
            self._spawn(self.auto_topups.charge(job.account_id))
        if settled.job is not None:
            self.announce(settled.job)
        return settled.job

    def _time_limit_s(self, service: Service) -> float:
        """The job timeout, or the service's declared maximum when shorter: the ceiling held
        for per-second prices counts on it."""
        return min(self.settings.job_timeout_s, self.catalog.time_limit_for(service))

    async def _store_files(self, job_id: str, output: dict[str, Any]) -> dict[str, Any]:
        """The output with each ``OutputFile`` stored and replaced by its public view."""
        if not _holds_files(output):
            return output  # text and numbers (an LLM's answer): nothing to store or walk
        expires_at = expiry(self.settings.result_ttl_s)

        async def walk(value: Any, field: str | None) -> Any:
            if isinstance(value, OutputFile):
                stored = await self.files.save_output(job_id, value, expires_at, field)
                return self.files.output_view(stored, value, self.settings.inline_output_bytes)
            if isinstance(value, dict):
                return {k: await walk(v, k) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [await walk(v, field) for v in value]
            return value

        result: dict[str, Any] = await walk(output, None)
        return result

    async def fail(
        self, job: JobRecord, code: str, message: str, **details: Any
    ) -> JobRecord | None:
        error = {"code": code, "message": message, **_jsonable(details)}
        settled = await self.money.settle(
            job,
            JobStatus.FAILED,
            error=error,
            memo=code,
            tell_replicas=job.id not in self.waited_here,
        )
        if settled.job is not None:
            self.announce(settled.job)
        return settled.job

    def announce(self, job: JobRecord) -> None:
        if self.events.has_subscribers(job.id):
            self.events.publish(job.id, "status", job_view(job, self.settings.public_url))
        if job.status.is_terminal:
            self.metrics.job_finished(job)
        if job.webhook_url and job.status.is_terminal:
            self._spawn(self._deliver_webhook(job))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` in the background (webhooks, auto top-up charges), never awaited by
        the job's response; ``close`` cancels what is still running."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _deliver_webhook(self, job: JobRecord) -> None:
        async with self.db.connect() as conn:
            secret = await ledger.webhook_secret(conn, job.account_id)
        event_type = f"job.{job.status.value}"

        async def record(attempt: Any) -> None:
            async with self.db.begin() as conn:
                await store.record_webhook_attempt(
                    conn,
                    job_id=job.id,
                    event_id=attempt.webhook_id,
                    attempt=attempt.number,
                    status_code=attempt.status_code,
                    error=(attempt.error or None) and str(attempt.error)[:500],
                    duration_ms=int(attempt.duration_s * 1000),
                )

        assert job.webhook_url is not None
        await self.webhooks.deliver(
            job.webhook_url,
            secret,
            event_type,
            job_view(job, self.settings.public_url),
            record=record,
        )


class _ProgressWriter:
    """Forwards engine events to subscribers and persists progress at most once a second."""

    def __init__(self, runner: JobRunner, job_id: str) -> None:
        self.runner = runner
        self.job_id = job_id
        self._last_write = 0.0
        self._last_stage: object = None

    async def emit(self, event: EngineEvent) -> None:
        self.runner.events.publish(self.job_id, event.kind, event.data)
        if event.kind != "progress":
            return
        now = time.monotonic()
        stage = event.data.get("stage")
        # Throttled, except that a new stage (loading_model, model_loaded, denoising...) is
        # always written, so /status never shows a stage that has ended.
        if now - self._last_write >= PROGRESS_WRITE_EVERY_S or stage != self._last_stage:
            self._last_write = now
            self._last_stage = stage
            async with self.runner.db.begin() as conn:
                await store.set_progress(conn, self.job_id, event.data)


def _holds_files(value: Any) -> bool:
    if isinstance(value, OutputFile):
        return True
    if isinstance(value, dict):
        return any(_holds_files(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_files(v) for v in value)
    return False


def _usage_dict(usage: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(usage).items() if v}


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(details, default=str))  # type: ignore[no-any-return]
