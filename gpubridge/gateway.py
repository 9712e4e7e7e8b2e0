"""The use cases both front doors share: quote, submit, run, get, cancel, stream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from gpubridge.catalog import Catalog, ModelSpec, Service
from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.engines.base import EngineEvent, EngineRequest
from gpubridge.engines.router import Router
from gpubridge.errors import (
    Conflict,
    Expired,
    GpubridgeError,
    NotFound,
    ServiceUnavailable,
)
from gpubridge.jobs import store
from gpubridge.jobs.dispatcher import Dispatcher
from gpubridge.jobs.events import JobEvents
from gpubridge.jobs.netguard import check_url
from gpubridge.jobs.status import ACTIVE, JobStatus
from gpubridge.jobs.store import JobRecord
from gpubridge.jobs.webhooks import WebhookSender
from gpubridge.money import micros_to_usd
from gpubridge.payments import ledger
from gpubridge.payments.accounts import Account, Accounts
from gpubridge.payments.pricing import discounted, tier_for
from gpubridge.payments.x402 import X402, Accepted, RequestBinding
from gpubridge.payments.x402.wallets import Claimed, claim
from gpubridge.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_WRITE_EVERY_S = 1.0


@dataclass(frozen=True)
class Submitted:
    job: JobRecord
    created: bool
    """False when an Idempotency-Key returned an earlier job."""


@dataclass(frozen=True)
class PaidSubmission:
    submitted: Submitted
    payment: Accepted
    """The settled x402 payment."""


class Gateway:
    """Validates, prices, charges, queues, runs and reports jobs."""

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
        self.dispatcher = Dispatcher(
            db,
            self.run_job,
            max_concurrency=max(
                1, sum(b.concurrency for s in catalog.services.values() for b in s.backends)
            ),
            poll_s=settings.dispatcher_poll_s,
            maintenance=self.maintenance,
        )
        self._background: set[asyncio.Task[Any]] = set()
        self.x402 = X402.from_settings(settings, db)

    async def start(self) -> None:
        self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.x402 is not None:
            await self.x402.close()

    # -- quotes -------------------------------------------------------------------------
    def estimate(
        self,
        service_key: str,
        *,
        seconds: float | None = None,
        payload: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The public cost estimate (no account, no discount)."""
        service = self.catalog.service(service_key)
        model = service.default_model
        if payload is not None:
            model = self.catalog.validate_input(service, payload)
        quote = self.catalog.quote(service, model, payload, seconds)
        body: dict[str, Any] = {
            "service": service.key,
            "model": model.id,
            "pricing_unit": quote.price.unit,
            "estimated_units": quote.units,
            "minimum_cost_usd": micros_to_usd(quote.price.minimum_micros),
            "estimated_cost_usd": micros_to_usd(quote.estimated_micros),
        }
        if quote.price.unit == "second":
            body["estimated_seconds"] = quote.units
            body["price_per_second"] = micros_to_usd(quote.price.micros) / quote.price.per
        else:
            body["estimated_seconds"] = service.estimated_seconds
            body[f"price_per_{quote.price.per}_{quote.price.unit}s"] = micros_to_usd(
                quote.price.micros
            )
        return body

    # -- submit -------------------------------------------------------------------------
    async def submit(
        self,
        account: Account,
        service_key: str,
        payload: Any,
        *,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        priority: str | None = None,
    ) -> Submitted:
        """Validate, hold the estimate and create the job; all before any GPU work."""
        service, model = await self._admit(service_key, payload, webhook_url)
        return await self._create(
            account,
            service,
            model,
            payload,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            priority=priority,
        )

    async def _admit(
        self, service_key: str, payload: Any, webhook_url: str | None
    ) -> tuple[Service, ModelSpec]:
        """Everything that refuses a request before it is charged: the input, a backend,
        the webhook URL."""
        service = self.catalog.service(service_key)
        model = self.catalog.validate_input(service, payload)
        if not service.backends:
            raise ServiceUnavailable(
                f"{service.key} has no backend configured on this server",
                code="service_unavailable",
            )
        if webhook_url is not None:
            await check_url(
                webhook_url,
                allow_private=self.settings.allow_private_urls,
                require_https=not self.settings.allow_private_urls,
            )
        return service, model

    async def _create(
        self,
        account: Account,
        service: Service,
        model: ModelSpec,
        payload: Any,
        *,
        webhook_url: str | None,
        idempotency_key: str | None,
        priority: str | None,
    ) -> Submitted:
        request_hash = _request_hash(service.key, payload, webhook_url)
        if idempotency_key is not None:
            earlier = await self._idempotent_replay(account, idempotency_key, request_hash)
            if earlier is not None:
                return Submitted(earlier, created=False)

        quote = self.catalog.quote(service, model, payload)
        job_id = str(uuid.uuid4())
        sync = service.mode == "sync"
        tier = tier_for(account.lifetime_spend_micros)
        hold_micros = discounted(quote.estimated_micros, tier.percent)
        now = utcnow()
        try:
            async with self.db.begin() as conn:
                await ledger.hold(conn, account.id, hold_micros, job_id=job_id, today=now.date())
                job = await store.insert_job(
                    conn,
                    created_at=now,
                    id=job_id,
                    account_id=account.id,
                    service=service.key,
                    model=model.id,
                    input=payload,
                    status=(JobStatus.RUNNING if sync else JobStatus.PENDING).value,
                    claimed_by=self.dispatcher.worker_id if sync else None,
                    priority=priority,
                    webhook_url=webhook_url,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    hold_micros=hold_micros,
                    discount_percent=tier.percent,
                )
        except IntegrityError:
            if idempotency_key is None:
                raise
            # A concurrent request with the same key won the race; its job is the answer.
            earlier = await self._idempotent_replay(account, idempotency_key, request_hash)
            if earlier is None:
                raise
            return Submitted(earlier, created=False)
        if sync:
            self.dispatcher.spawn(job)
        else:
            self.dispatcher.notify()
        return Submitted(job, created=True)

    async def submit_paid(
        self,
        payment: str | dict[str, Any] | None,
        service_key: str,
        payload: Any,
        *,
        resource: str,
        binding: RequestBinding | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        priority: str | None = None,
    ) -> PaidSubmission:
        """Submit a job paid with x402 (a header value or a decoded payment object).

        Without a payment: ``X402Required`` (402) for the job's quoted price. With one: it is
        verified, reserved and settled before the job exists, and credited to the payer's
        wallet account, which the job is then held and charged on like any other account.
        An Idempotency-Key replays within that account only: a retry with a new payment gets
        the earlier job, and its payment stays in the wallet account as credit.
        """
        if self.x402 is None:
            raise ServiceUnavailable("x402 payments are off on this server", code="x402_disabled")
        service, model = await self._admit(service_key, payload, webhook_url)
        quote = self.catalog.quote(service, model, payload)
        offer = self.x402.offer(
            quote.estimated_micros, resource, f"{service.name} ({service.key}) job"
        )
        if payment is None:
            raise self.x402.required(offer)
        accepted = await self.x402.accept(self.x402.decode(payment), offer, binding)
        submitted = await self._create(
            accepted.account,
            service,
            model,
            payload,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            priority=priority,
        )
        return PaidSubmission(submitted, accepted)

    async def claim_wallet(
        self, address: str, message: str, signature: str, *, server: str
    ) -> Claimed:
        """A new API key for a wallet account, against a fresh message signed by the wallet."""
        return await claim(self.db, address, message, signature, server=server)

    async def _idempotent_replay(
        self, account: Account, key: str, request_hash: str
    ) -> JobRecord | None:
        async with self.db.connect() as conn:
            earlier = await store.find_by_idempotency_key(conn, account.id, key)
        if earlier is not None and earlier.request_hash != request_hash:
            raise Conflict(
                "this Idempotency-Key was used with a different request",
                code="idempotency_key_reused",
            )
        return earlier

    async def wait(self, job: JobRecord, timeout_s: float, poll_s: float = 0.05) -> JobRecord:
        """Wait up to ``timeout_s`` for a job to end; return its latest state."""
        try:
            async with asyncio.timeout(timeout_s):
                task = self.dispatcher.task_for(job.id)
                if task is not None:
                    finished = await asyncio.shield(task)
                    if isinstance(finished, JobRecord):
                        return finished
                # Not running here (another request or replica runs it): watch the store.
                while not job.status.is_terminal:
                    await asyncio.sleep(poll_s)
                    job = await self.get(job.id)
        except TimeoutError:
            pass
        return await self.get(job.id)

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

    async def list_jobs(
        self, account: Account, limit: int, offset: int
    ) -> tuple[list[JobRecord], int]:
        async with self.db.connect() as conn:
            return await store.list_jobs(conn, account.id, limit, offset)

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
            await ledger.credit(conn, account.id, micros, kind="grant", memo=memo)
            return await ledger.available_balance(conn, account.id)

    # -- cancel -------------------------------------------------------------------------
    async def cancel(self, account: Account, job_id: str) -> JobRecord:
        """Cancel a pending or running job and refund its hold in full."""
        async with self.db.begin() as conn:
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
        self._announce(cancelled)
        return cancelled

    # -- run ----------------------------------------------------------------------------
    async def run_job(self, job: JobRecord) -> JobRecord | None:
        """Run a claimed job on its service's backends, then capture or refund."""
        service = self.catalog.service(job.service)
        model = service.model(job.model) or service.default_model
        self.events.publish(job.id, "status", {"status": JobStatus.RUNNING.value})
        progress = _ProgressWriter(self, job.id)
        request = EngineRequest(job.id, service.key, model.ref(), job.input)
        try:
            async with asyncio.timeout(self.settings.job_timeout_s):
                routed = await self.router.execute(
                    service.backends, request, progress.emit, job.priority
                )
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            return await self._fail(job, "timeout", "the job ran past its time limit")
        except GpubridgeError as exc:
            return await self._fail(job, exc.code, exc.message, **exc.details)
        except Exception as exc:
            log.exception("job failed unexpectedly", extra={"job_id": job.id})
            return await self._fail(job, "internal_error", f"{type(exc).__name__}: {exc}")
        quote = self.catalog.quote(service, model, job.input)
        cost = min(
            discounted(self.catalog.actual_cost(quote, routed.result.usage), job.discount_percent),
            job.hold_micros,
        )
        usage = _usage_dict(routed.result.usage)
        async with self.db.begin() as conn:
            finished = await store.finish_job(
                conn,
                job,
                JobStatus.COMPLETED,
                output=routed.result.output,
                usage=usage,
                cost_micros=cost,
                backend=routed.backend,
            )
            if finished is not None:
                await ledger.capture(
                    conn,
                    job.account_id,
                    job_id=job.id,
                    held_micros=job.hold_micros,
                    cost_micros=cost,
                    held_on=job.created_at.date(),
                )
        if finished is not None:
            self._announce(finished)
        return finished

    async def _fail(
        self, job: JobRecord, code: str, message: str, **details: Any
    ) -> JobRecord | None:
        error = {"code": code, "message": message, **_jsonable(details)}
        async with self.db.begin() as conn:
            failed = await store.finish_job(conn, job, JobStatus.FAILED, error=error)
            if failed is not None:
                await ledger.refund(
                    conn,
                    job.account_id,
                    job_id=job.id,
                    held_micros=job.hold_micros,
                    held_on=job.created_at.date(),
                    memo=code,
                )
        if failed is not None:
            self._announce(failed)
        return failed

    def _announce(self, job: JobRecord) -> None:
        self.events.publish(job.id, "status", job_view(job, self.settings.public_url))
        if job.webhook_url and job.status.is_terminal:
            task = asyncio.create_task(self._deliver_webhook(job))
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

    # -- stream -------------------------------------------------------------------------
    async def stream(self, job_id: str, poll_s: float = 1.0) -> AsyncIterator[dict[str, Any]]:
        """Live events of a job until it ends: status changes, progress and tokens."""
        async with self.events.subscribe(job_id) as queue:
            job = await self.get(job_id)
            yield {"event": "status", "data": job_view(job, self.settings.public_url)}
            last_status = job.status
            while not last_status.is_terminal:
                try:
                    async with asyncio.timeout(poll_s):
                        item = await queue.get()
                except TimeoutError:
                    # The job may run on another replica: fall back to the store.
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
    async def maintenance(self) -> None:
        """Expire old outputs; fail and refund jobs whose worker vanished."""
        async with self.db.begin() as conn:
            await store.purge_expired_outputs(conn, self.settings.result_ttl_s)
        cutoff = utcnow() - timedelta(seconds=self.settings.stale_job_s)
        async with self.db.connect() as conn:
            stale = await store.stale_running(conn, cutoff)
        for job in stale:
            if self.dispatcher.task_for(job.id) is None:
                await self._fail(job, "worker_lost", "the worker running this job stopped")
        if self.x402 is not None:
            await self.x402.reconcile()


class _ProgressWriter:
    """Forwards engine events to subscribers and persists progress at most once a second."""

    def __init__(self, gateway: Gateway, job_id: str) -> None:
        self.gateway = gateway
        self.job_id = job_id
        self._last_write = 0.0

    async def emit(self, event: EngineEvent) -> None:
        self.gateway.events.publish(self.job_id, event.kind, event.data)
        if event.kind != "progress":
            return
        now = time.monotonic()
        if now - self._last_write >= PROGRESS_WRITE_EVERY_S:
            self._last_write = now
            async with self.gateway.db.begin() as conn:
                await store.set_progress(conn, self.job_id, event.data)


def job_view(job: JobRecord, public_url: str = "") -> dict[str, Any]:
    """The public JSON shape of a job (GET /status, webhooks, MCP)."""
    view: dict[str, Any] = {
        "id": job.id,
        "job_id": job.id,
        "service": job.service,
        "model": job.model,
        "status": job.status.value,
        "status_url": f"{public_url}/status/{job.id}",
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        "execution_time_seconds": (
            round(job.execution_ms / 1000, 3) if job.execution_ms is not None else None
        ),
        "estimated_cost_usd": micros_to_usd(job.hold_micros),
        "cost_usd": micros_to_usd(job.cost_micros) if job.cost_micros is not None else None,
        "backend": job.backend,
    }
    if job.status == JobStatus.COMPLETED:
        view["output"] = job.output
        view["usage"] = job.usage
    if job.error is not None:
        view["error"] = job.error
    if job.progress is not None and not job.status.is_terminal:
        view["progress"] = job.progress
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        view["refunded_usd"] = micros_to_usd(job.hold_micros)
    return view


def _request_hash(service: str, payload: Any, webhook_url: str | None) -> str:
    canonical = json.dumps(
        {"service": service, "input": payload, "webhook_url": webhook_url},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _usage_dict(usage: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(usage).items() if v}


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(details, default=str))  # type: ignore[no-any-return]


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def service_summary(service: Service) -> dict[str, Any]:
    """The public catalog entry of a service."""
    price = service.price
    return {
        "key": service.key,
        "name": service.name,
        "category": service.category,
        "description": service.description,
        "mode": service.mode,
        "available": bool(service.backends),
        "estimated_seconds": service.estimated_seconds,
        "pricing": {
            "unit": price.unit,
            "from_usd": micros_to_usd(price.minimum_micros),
            "micros": price.micros,
            "per": price.per,
        },
        "models": [
            {
                "id": m.id,
                "source": m.source,
                "default": m is service.default_model,
                "description": m.description,
                "license": m.license,
                **(
                    {
                        "from_usd": micros_to_usd(m.price.minimum_micros),
                        "price_micros": m.price.micros,
                        "per": m.price.per,
                    }
                    if m.price
                    else {}
                ),
            }
            for m in service.models
        ],
        "input_schema": service.input_schema,
        "output_schema": service.output_schema,
    }
