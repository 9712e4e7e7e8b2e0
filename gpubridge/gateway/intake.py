"""Taking jobs in: validate, quote, admit, fetch media, charge (credits or x402) and create.

``Gateway`` inherits this; it keeps the collaborators the methods below use.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    ServiceUnavailable,
)
from gpubridge.gateway.money_path import Funding, MoneyPath
from gpubridge.gateway.notices import Notices
from gpubridge.gateway.payment_rails import PaymentRails
from gpubridge.gateway.runner import JobRunner
from gpubridge.ids import random_uuid
from gpubridge.jobs import store
from gpubridge.jobs.dispatcher import Dispatcher
from gpubridge.jobs.files import FileStore, expiry
from gpubridge.jobs.media import FIELD_KINDS, MediaFetcher
from gpubridge.jobs.netguard import check_url
from gpubridge.jobs.status import JobStatus
from gpubridge.jobs.store import JobRecord
from gpubridge.money import micros_to_usd
from gpubridge.payments.accounts import Account, Accounts
from gpubridge.payments.pricing import discounted, tier_for
from gpubridge.payments.x402 import X402
from gpubridge.payments.x402.wallets import Claimed, claim
from gpubridge.settings import Settings

log = logging.getLogger(__name__)

_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")


@dataclass(frozen=True)
class Submitted:
    job: JobRecord
    created: bool
    """False when an Idempotency-Key returned an earlier job."""
    unseen: bool = False
    """The job was just created under an id made for it and shown to no one yet (no
    Idempotency-Key can return it, no payer was promised it)."""


class Intake:
    """The submit side of ``Gateway``."""

    settings: Settings
    db: Database
    catalog: Catalog
    accounts: Accounts
    router: Router
    files: FileStore
    media: MediaFetcher
    dispatcher: Dispatcher
    runner: JobRunner
    money: MoneyPath
    x402: X402 | None
    payment_rails: PaymentRails
    notices: Notices
    availability: Availability

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
        job_id: str | None = None,
        funding: Funding | None = None,
    ) -> Submitted:
        """Hold the job's ceiling on ``account`` and create the job (under ``job_id`` when
        given: one its client was promised); ``funding`` credits the hold in the same
        transaction (a metered payment's authorization, for this job alone)."""
        # Only a job with a key can be replayed, so only its request is hashed (and kept).
        request_hash: str | None = None
        if idempotency_key is not None:
            digests = {f: hashlib.sha256(media[f].data).hexdigest() for f in sorted(uploaded)}
            request_hash = _request_hash(service.key, payload, webhook_url, digests)
            earlier = await self._idempotent_replay(account, idempotency_key, request_hash)
            if earlier is not None:
                return Submitted(earlier, created=False)

        quote = self.catalog.quote(
            service, model, payload, await _audio_seconds(service, model, media)
        )
        unseen = job_id is None and idempotency_key is None
        job_id = job_id or random_uuid()
        sync = service.mode == "sync"
        tier = tier_for(account.lifetime_spend_micros)
        hold_micros = discounted(quote.ceiling_micros, tier.percent)
        now = utcnow()
        inputs = await self.files.save_inputs(
            media, expiry(self.settings.job_timeout_s + self.settings.result_ttl_s)
        )
        try:
            job = await self.money.admit(
                hold_micros,
                now.date(),
                extra=(lambda conn: self.files.record_inputs(conn, job_id, inputs))
                if inputs
                else None,
                funding=funding,
                on_late=self._start,
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
        except BaseException as exc:
            await self.files.discard(inputs)
            if not isinstance(exc, IntegrityError) or idempotency_key is None:
                raise
            # A concurrent request with the same key won the race; its job is the answer.
            earlier = await self._idempotent_replay(account, idempotency_key, request_hash)
            if earlier is None:
                raise
            return Submitted(earlier, created=False)
        self._start(job)
        return Submitted(job, created=True, unseen=unseen)

    def _start(self, job: JobRecord) -> None:
        """A job just created: run it here (sync) or wake a dispatcher (async)."""
        if job.status == JobStatus.RUNNING:
            self.dispatcher.spawn(job)
        else:
            self.dispatcher.notify()
        self.runner.metrics.job_submitted(job)

    async def claim_wallet(
        self, address: str, message: str, signature: str, *, server: str
    ) -> Claimed:
        """A new API key for a wallet account, against a fresh message signed by the wallet."""
        return await claim(self.accounts, address, message, signature, server=server)

    async def _idempotent_replay(
        self, account: Account, key: str, request_hash: str | None
    ) -> JobRecord | None:
        async with self.db.connect() as conn:
            earlier = await store.find_by_idempotency_key(conn, account.id, key)
        if earlier is not None and earlier.request_hash != request_hash:
            raise Conflict(
                "this Idempotency-Key was used with a different request",
                code="idempotency_key_reused",
            )
        return earlier


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
