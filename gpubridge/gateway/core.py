"""The use cases both front doors share: quote, submit, get, cancel, stream."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
from sqlalchemy.exc import IntegrityError

from gpubridge.catalog import Catalog, ModelSpec, Service
from gpubridge.catalog.availability import Availability
from gpubridge.catalog.catalog import ceiling_output_tokens
from gpubridge.db import Database
from gpubridge.db.engine import utcnow
from gpubridge.engines.base import MediaInput
from gpubridge.engines.media import media_duration_seconds
from gpubridge.engines.router import Router
from gpubridge.errors import (
    Conflict,
    Expired,
    GpubridgeError,
    NotFound,
    ServiceUnavailable,
)
from gpubridge.gateway.discovery import Describe
from gpubridge.gateway.payment_rails import PaymentRails
from gpubridge.gateway.remote_workers import RemoteWorkers
from gpubridge.gateway.runner import JobRunner
from gpubridge.gateway.upkeep import Upkeep, lease_info
from gpubridge.gateway.views import job_view
from gpubridge.gateway.warmup import Warmup
from gpubridge.gateway.worker_metrics import WorkerCollector
from gpubridge.jobs import store
from gpubridge.jobs.blobs import blob_store_from_settings
from gpubridge.jobs.dispatcher import Dispatcher
from gpubridge.jobs.events import JobEvents
from gpubridge.jobs.files import FileStore, StoredFile, expiry
from gpubridge.jobs.media import FIELD_KINDS, MediaFetcher
from gpubridge.jobs.netguard import check_url
from gpubridge.jobs.status import ACTIVE, JobStatus
from gpubridge.jobs.store import JobRecord
from gpubridge.jobs.webhooks import WebhookSender
from gpubridge.money import micros_to_usd
from gpubridge.payments import ledger
from gpubridge.payments.accounts import Account, Accounts
from gpubridge.payments.crypto_topups import CryptoTopups
from gpubridge.payments.ledger_check import LedgerReport
from gpubridge.payments.pricing import discounted, tier_for
from gpubridge.payments.stripe_topups import CardTopups
from gpubridge.payments.x402 import X402, Accepted, RequestBinding
from gpubridge.payments.x402.bazaar import BAZAAR
from gpubridge.payments.x402.wallets import Claimed, claim
from gpubridge.settings import Settings

log = logging.getLogger(__name__)

ABANDON_CANCEL_S = 10.0
"""The most time given to cancelling the job of a caller that went away."""

_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")


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
        self.runner = JobRunner(
            settings,
            db,
            catalog,
            router,
            webhooks,
            self.events,
            files=self.files,
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
        await self.dispatcher.renew_lease()
        self.dispatcher.start()
        self.warmup.start()

    async def stop(self) -> None:
        """Stop at once and leave nothing hanging: running jobs get the shutdown grace to
        finish; the others stop, and are requeued if no backend had taken them yet (async
        jobs) or failed and refunded."""
        await self.warmup.stop()
        await self.upkeep.shut_down()
        await self.runner.close()
        await self.media.aclose()
        await self.card_topups.close()
        await self.crypto_topups.close()
        if self.x402 is not None:
            await self.x402.close()

    def _capacity(self) -> dict[str, int]:
        """Jobs of each service this replica can run at once (see ``_service_capacity``)."""
        return {key: self._service_capacity(s) for key, s in self.catalog.services.items()}

    def _service_capacity(self, service: Service) -> int:
        """Its backends' concurrency, less the backends whose runtime runs in workers when no
        worker here serves the service (remote workers come and go), so that other replicas
        take those jobs."""
        registry = self.router.registry
        pool = registry.workers
        return sum(
            b.concurrency
            for b in service.backends
            if pool is None or not registry.runs_in_worker(b.type) or pool.can_serve(service.key)
        )

    # -- quotes -------------------------------------------------------------------------
    def estimate(
        self,
        service_key: str,
        *,
        seconds: float | None = None,
        payload: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The public cost estimate (no account, no discount): the typical cost, and the
        ceiling that a job holds until it ends and is charged what it used."""
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
            "ceiling_units": quote.ceiling_units,
            "ceiling_cost_usd": micros_to_usd(quote.ceiling_micros),
            "hold": (
                "a job holds ceiling_cost_usd, the most it can cost, and is charged what it "
                "uses (never more); the rest is released when it ends"
            ),
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
        media: Mapping[str, MediaInput] | None = None,
    ) -> Submitted:
        """Validate, hold the job's ceiling and create the job; all before any GPU work.

        ``media`` hands over media inputs already in hand (an upload) instead of fetching
        them: each is keyed by its input field, which ``payload`` must name (with a
        placeholder such as ``"upload:<filename>"``, never the bytes), and gets the same size,
        type and content checks as a fetched file.
        """
        service, model = await self._admit(service_key, payload, webhook_url)
        fetched = await self._media(payload, media)
        return await self._create(
            account,
            service,
            model,
            payload,
            fetched,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            priority=priority,
            uploaded=frozenset(media or ()),
        )

    async def _admit(
        self, service_key: str, payload: Any, webhook_url: str | None
    ) -> tuple[Service, ModelSpec]:
        """What refuses a request before it is charged or asked to pay, without fetching
        anything: the input, a backend, the webhook URL."""
        service = self.catalog.service(service_key)
        model = self.catalog.validate_input(service, payload)
        if "max_tokens" in service.input_schema.get("properties", {}):
            # The hold covers this many output tokens: every backend is told the same bound,
            # including remote ones whose own default could run past it.
            payload.setdefault("max_tokens", ceiling_output_tokens(service, model, payload))
        if not service.backends:
            raise ServiceUnavailable(
                f"{service.key} has no backend configured on this server",
                code="service_unavailable",
            )
        await self.availability.require(service, model)  # runtime installed, weights here
        if service.mode == "sync" and not self._service_capacity(service):
            # Sync jobs run on the replica that takes them; async ones may wait in the queue
            # for a replica (or a remote worker) that serves them.
            raise ServiceUnavailable(
                f"no worker serves {service.key} on this server now", code="no_worker"
            )
        if webhook_url is not None:
            await check_url(
                webhook_url,
                allow_private=self.settings.allow_private_urls,
                require_https=not self.settings.allow_private_urls,
            )
        return service, model

    async def _media(
        self, payload: Any, given: Mapping[str, MediaInput] | None = None
    ) -> dict[str, MediaInput]:
        """The media inputs, fetched (or, when ``given``, taken as handed over) and checked.
        Only for a caller whose key or payment is verified: fetching is the costly part of
        taking a request in (up to ``media_max_bytes`` per URL)."""
        given = given or {}
        media = await self.media.fetch_all({k: v for k, v in payload.items() if k not in given})
        for field, item in given.items():
            kind = FIELD_KINDS.get(field)
            if kind is None or field not in payload:
                raise ValueError(f"{field!r} is not a media field of this input")
            declared = item.content_type.split(";")[0].strip().lower()
            if not _MEDIA_TYPE.fullmatch(declared):
                declared = "application/octet-stream"
            # As a data: URL, the bytes go through the fetcher's own size, type and content
            # checks without any network access.
            encoded = base64.b64encode(item.data).decode("ascii")
            media[field] = await self.media.fetch(field, f"data:{declared};base64,{encoded}", kind)
        return media

    async def _create(
        self,
        account: Account,
        service: Service,
        model: ModelSpec,
        payload: Any,
        media: dict[str, MediaInput],
        *,
        webhook_url: str | None,
        idempotency_key: str | None,
        priority: str | None,
        uploaded: frozenset[str] = frozenset(),
    ) -> Submitted:
        digests = {f: hashlib.sha256(media[f].data).hexdigest() for f in sorted(uploaded)}
        request_hash = _request_hash(service.key, payload, webhook_url, digests)
        if idempotency_key is not None:
            earlier = await self._idempotent_replay(account, idempotency_key, request_hash)
            if earlier is not None:
                return Submitted(earlier, created=False)

        quote = self.catalog.quote(
            service, model, payload, await _audio_seconds(service, model, media)
        )
        job_id = str(uuid.uuid4())
        sync = service.mode == "sync"
        tier = tier_for(account.lifetime_spend_micros)
        hold_micros = discounted(quote.ceiling_micros, tier.percent)
        now = utcnow()
        inputs = await self.files.save_inputs(
            media, expiry(self.settings.job_timeout_s + self.settings.result_ttl_s)
        )
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
                await self.files.record_inputs(conn, job_id, inputs)
        except BaseException as exc:
            await self.files.discard(inputs)
            if not isinstance(exc, IntegrityError) or idempotency_key is None:
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
        self.runner.metrics.job_submitted(job)
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
        media: Mapping[str, MediaInput] | None = None,
        describe: Describe | None = None,
    ) -> PaidSubmission:
        """Submit a job paid with x402 (a header value or a decoded payment object).

        Without a payment: ``X402Required`` (402) for the job's ceiling, the hold it will
        need (what the job does not use stays in the wallet account), priced without
        fetching any media. With one: it is verified, reserved and settled before the job
        exists, and credited to the payer's wallet account, which the job is then held and
        charged on like any other account; only then are media inputs fetched (a bad one is
        refused and the payment stays in the wallet account).
        An Idempotency-Key replays within that account only: a retry with a new payment gets
        the earlier job, and its payment stays in the wallet account as credit. ``media`` is
        as for ``submit``. ``describe`` gives the 402 its Bazaar extension (how the door's
        resource is called), for x402 directories and agents.
        """
        if self.x402 is None:
            raise ServiceUnavailable("x402 payments are off on this server", code="x402_disabled")
        service, model = await self._admit(service_key, payload, webhook_url)
        # Priced without fetching the media: the ceiling for any input of this request (for
        # audio priced per second, the whole time limit). Whoever has not paid makes this
        # server fetch and decode nothing.
        quote = self.catalog.quote(service, model, payload)
        offer = self.x402.offer(
            quote.ceiling_micros,
            resource,
            f"{service.name} ({service.key}) job",
            {BAZAAR: describe(service)} if describe is not None else None,
        )
        if payment is None:
            raise self.x402.required(offer)
        accepted = await self.x402.accept(self.x402.decode(payment), offer, binding)
        try:
            fetched = await self._media(payload, media)
        except GpubridgeError as exc:
            # The payment is settled: it stays in the wallet account, as after a failed job.
            exc.message = (
                f"{exc.message}; the payment was credited to the wallet account of "
                f"{accepted.payer}, claim it with POST /account/wallet/claim"
            )
            raise
        submitted = await self._create(
            accepted.account,
            service,
            model,
            payload,
            fetched,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            priority=priority,
            uploaded=frozenset(media or ()),
        )
        return PaidSubmission(submitted, accepted)

    async def claim_wallet(
        self, address: str, message: str, signature: str, *, server: str
    ) -> Claimed:
        """A new API key for a wallet account, against a fresh message signed by the wallet."""
        return await claim(self.accounts, address, message, signature, server=server)

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

    async def file(self, file_id: str) -> tuple[StoredFile, bytes]:
        """A job's file (an output, or a fetched input) until it expires."""
        return await self.files.read(file_id)

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
    async def check_ledger(self) -> LedgerReport:
        """Prove the ledger's invariants (see ``ledger_check``); the result shows in /metrics."""
        return await self.upkeep.check_ledger()

    async def maintenance(self) -> None:
        """Expire old outputs; requeue or refund the jobs of replicas that vanished; now and
        then, prove the ledger."""
        await self.upkeep.run()


async def _audio_seconds(
    service: Service, model: ModelSpec, media: dict[str, MediaInput]
) -> float | None:
    """The length of the audio input of a service priced per audio second, when known."""
    audio = media.get("audio_url")
    if audio is None or service.price_for(model).unit != "audio_second":
        return None
    return await asyncio.to_thread(media_duration_seconds, audio)


def _request_hash(
    service: str, payload: Any, webhook_url: str | None, uploads: dict[str, str] | None = None
) -> str:
    """What an Idempotency-Key is bound to; ``uploads`` are the SHA-256 of handed-over media."""
    request: dict[str, Any] = {"service": service, "input": payload, "webhook_url": webhook_url}
    if uploads:
        request["uploads"] = uploads
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
