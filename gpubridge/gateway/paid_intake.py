"""Taking jobs in paid with x402: the challenge, the payment, and the requests that outlive
their exchange.

A payment is verified, reserved and settled before its job exists (``X402.accept``). Two cases
keep the request beyond that:

- **Settlement pending.** The settlement was sent but its receipt did not come in time. The
  request is kept (``paid_requests``) under the job id its client is given (202,
  ``settlement_pending``), and ``resolve_pending_payments`` (run by the maintenance loop)
  creates that job once the transfer is confirmed, or releases the reservation if the transfer
  never lands. The payment is credited once and the job held once (its id is unique), whatever
  the number of replicas resolving.
- **Payment identifier.** A v2 payment naming a ``payment-identifier`` is kept under it: a
  paid retry with the same identifier (signed by the same payer, for the same request) gets
  the first request's job (or its pending state), and its own authorization is not settled.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from gpubridge.catalog import ModelSpec, Service
from gpubridge.engines.base import MediaInput
from gpubridge.errors import (
    Conflict,
    GpubridgeError,
    InsufficientCredits,
    NegativeBalance,
    ServiceUnavailable,
    SpendingLimitExceeded,
)
from gpubridge.gateway.discovery import Describe
from gpubridge.gateway.intake import Intake, Submitted, _request_hash
from gpubridge.ids import random_uuid
from gpubridge.jobs import store as jobs
from gpubridge.payments.accounts import Account
from gpubridge.payments.x402 import Accepted, Payment, RequestBinding
from gpubridge.payments.x402 import paid_requests as requests
from gpubridge.payments.x402.bazaar import BAZAAR
from gpubridge.payments.x402.codec import ExactPayment
from gpubridge.payments.x402.errors import PaymentUnconfirmed, SettlementPending
from gpubridge.payments.x402.outcomes import Released
from gpubridge.payments.x402.paid_requests import PaidRequest
from gpubridge.payments.x402.requirements import Offer
from gpubridge.payments.x402.wallets import find_wallet_account

log = logging.getLogger(__name__)

NO_CREDIT = "insufficient_wallet_credit"
"""Why a signed-in wallet is asked to pay: its account holds less than the job's hold."""


@dataclass(frozen=True)
class PaidSubmission:
    submitted: Submitted
    account: Account
    """The wallet account the job is held and charged on."""
    payment: Accepted | None
    """The settled x402 payment; None when the wallet signed in and spent its credit."""


class PaidIntake(Intake):
    """The x402 side of ``Gateway``'s intake."""

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
        sign_in: str | None = None,
    ) -> PaidSubmission:
        """Submit a job paid with x402 (a header value or a decoded payment object).

        Without a payment: ``X402Required`` (402) for the job's ceiling, the hold it will
        need (what the job does not use stays in the wallet account), priced without
        fetching any media. With one: it is verified, reserved and settled before the job
        exists, and credited to the payer's wallet account, which the job is then held and
        charged on like any other account (a metered ``upto`` payment is authorized for the
        ceiling and settled for what the job used once it ends, ``finish_metered``); only
        then are media inputs fetched (a bad one is
        refused and the payment stays in the wallet account). A settlement not confirmed in
        time is ``SettlementPending`` (202) with the job id the request will get.
        An Idempotency-Key replays within that account only: a retry with a new payment gets
        the earlier job, and its payment stays in the wallet account as credit. A payment
        identifier replays without settling the retry's payment. ``media`` is as for
        ``submit``. ``describe`` gives the 402 its Bazaar extension (how the door's resource
        is called), for x402 directories and agents. ``sign_in`` (a ``SIGN-IN-WITH-X`` header,
        with no payment) spends the signed-in wallet account's credit instead; without enough
        of it the answer is the 402 again.
        """
        if self.x402 is None:
            raise ServiceUnavailable("x402 payments are off on this server", code="x402_disabled")
        service, model = await self._admit(service_key, payload, webhook_url)
        # Priced without fetching the media: the ceiling for any input of this request (for
        # audio priced per second, the whole time limit). Whoever has not paid makes this
        # server fetch and decode nothing.
        quote = self.catalog.quote(service, model, payload)
        await self.x402.prepare()
        offer = self.x402.offer(
            quote.ceiling_micros,
            resource,
            f"{service.name} ({service.key}) job",
            {BAZAAR: describe(service)} if describe is not None else None,
            metered=quote.price.metered,
        )
        if payment is None:
            if sign_in is not None:
                return await self._signed_in(
                    sign_in,
                    offer,
                    service,
                    model,
                    payload,
                    media,
                    webhook_url=webhook_url,
                    idempotency_key=idempotency_key,
                    priority=priority,
                )
            raise self.x402.required(offer)
        decoded = self.x402.decode(payment)
        request_hash = _request_hash(service.key, payload, webhook_url)
        identifier = decoded.identifier if isinstance(decoded, ExactPayment) else None
        if identifier is not None and isinstance(decoded, ExactPayment):
            replayed = await self._replay_identified(decoded, identifier, offer, request_hash)
            if replayed is not None:
                return replayed
        job_id = random_uuid()
        try:
            accepted = await self.x402.accept(decoded, offer, binding, job_id=job_id)
        except PaymentUnconfirmed as unconfirmed:
            if media:  # handed-over bytes are not kept: the payment stays in the wallet
                raise ServiceUnavailable(
                    "the payment was sent but is not confirmed yet; once it is, it is credited "
                    f"to the wallet account of {decoded.payer}",
                    code="payment_network_unavailable",
                ) from None
            pending = await self._keep(
                unconfirmed.payment_id,
                decoded,
                identifier,
                job_id,
                requests.PENDING,
                request_hash,
                service.key,
                payload,
                webhook_url=webhook_url,
                priority=priority,
                idempotency_key=idempotency_key,
            )
            raise self._pending(pending, unconfirmed.receipt) from None
        kept: PaidRequest | None = None
        if identifier is not None:
            kept = await self._keep(
                accepted.payment_id,
                decoded,
                identifier,
                job_id,
                requests.SUBMITTED,
                request_hash,
                service.key,
                payload,
            )
        try:
            try:
                fetched = await self._media(payload, media)
            except GpubridgeError as exc:
                if accepted.metered:  # nothing moved: the authorization is released below
                    exc.message = f"{exc.message}; the upto authorization was not used"
                else:  # settled: it stays in the wallet account, as after a failed job
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
                job_id=job_id,
                funding=self.x402.funding(accepted),
            )
        except BaseException:
            if kept is not None:  # no job: a retry with this identifier is a new request
                await requests.discard(self.db, kept.id)
            if accepted.metered:  # no job to pay for: the authorization moves nothing
                await self.x402.finish_metered(accepted, abandoned=True)
            raise
        if kept is not None and submitted.job.id != job_id:
            await requests.move_job(self.db, kept.id, submitted.job.id)
        if accepted.metered and submitted.job.id != job_id:
            # An earlier job was replayed (Idempotency-Key): this authorization pays nothing.
            accepted = await self.x402.finish_metered(accepted, abandoned=True)
        return PaidSubmission(submitted, accepted.account, accepted)

    async def finish_metered(self, paid: PaidSubmission) -> PaidSubmission:
        """``paid`` with its metered payment settled, once its job has ended."""
        if self.x402 is None or paid.payment is None or not paid.payment.metered:
            return paid
        settled = await self.x402.finish_metered(paid.payment)
        return PaidSubmission(paid.submitted, paid.account, settled)

    async def _signed_in(
        self,
        header: str,
        offer: Offer,
        service: Service,
        model: ModelSpec,
        payload: Any,
        media: Mapping[str, MediaInput] | None,
        **job: Any,
    ) -> PaidSubmission:
        """The job held on the wallet account that signed in, or the 402 when it has none or
        not enough credit for the hold (the client then pays)."""
        assert self.x402 is not None
        address = await self.x402.sign_in(header, offer)
        account = await find_wallet_account(self.db, address)
        if account is None:
            raise self.x402.required(
                offer, NO_CREDIT, f"{address} has no wallet account here: pay with x402"
            )
        fetched = await self._media(payload, media)
        try:
            submitted = await self._create(
                account, service, model, payload, fetched, uploaded=frozenset(media or ()), **job
            )
        except (InsufficientCredits, NegativeBalance, SpendingLimitExceeded) as exc:
            raise self.x402.required(offer, NO_CREDIT, f"{exc.message}; pay with x402") from None
        return PaidSubmission(submitted, account, None)

    async def _keep(
        self,
        payment_id: str,
        payment: Payment,
        identifier: str | None,
        job_id: str,
        status: str,
        request_hash: str,
        service: str,
        payload: Any,
        **job: Any,
    ) -> PaidRequest:
        version = payment.version if isinstance(payment, ExactPayment) else 1
        try:
            return await requests.record(
                self.db,
                job_id=job_id,
                payment_id=payment_id,
                payer=payment.payer,
                payment_identifier=identifier,
                request_hash=request_hash,
                service=service,
                input=payload,
                version=version,
                status=status,
                **job,
            )
        except requests.IdentifierTaken:
            # A concurrent request with the same identifier got there first; this payment
            # stays in the wallet account.
            raise Conflict(
                "another request with this payment identifier is being paid; retry it, and "
                "this payment stays in the wallet account as credit",
                code="payment_identifier_in_use",
            ) from None

    async def _replay_identified(
        self, payment: ExactPayment, identifier: str, offer: Offer, request_hash: str
    ) -> PaidSubmission | None:
        """The first request named by this payer's ``identifier``, or None when there is none
        (or it was released: this payment pays anew)."""
        assert self.x402 is not None
        kept = await requests.by_identifier(self.db, payment.payer, identifier)
        if kept is None:
            return None
        self.x402.check_signed(payment, offer)  # the payer's own retry, signed for this price
        if kept.request_hash != request_hash:
            raise Conflict(
                "this payment identifier was used for a different request",
                code="payment_identifier_reused",
            )
        if kept.status == requests.RELEASED:
            await requests.forget(self.db, kept.id)
            return None
        if kept.status == requests.PENDING:
            outcome = await self.x402.resolve(kept.payment_id, kept.version)
            if outcome is None:
                raise self._pending(kept, None)
            if isinstance(outcome, Released):
                await requests.resolve(self.db, kept.id, requests.RELEASED, outcome.reason)
                await requests.forget(self.db, kept.id)
                return None
            await self._submit_confirmed(kept, outcome)
        accepted = await self.x402.accepted(kept.payment_id, kept.version)
        if accepted is None:
            raise Conflict(
                "the payment with this identifier did not pay", code="payment_identifier_unpaid"
            )
        async with self.db.connect() as conn:
            job = await jobs.get_job(conn, kept.job_id)
        if job is None:
            raise Conflict(
                "the request with this payment identifier is still being taken in; retry it",
                code="payment_identifier_in_use",
            )
        return PaidSubmission(Submitted(job, created=False), accepted.account, accepted)

    def _pending(self, kept: PaidRequest, receipt: dict[str, Any] | None) -> SettlementPending:
        url = f"{self.settings.public_url}/status/{kept.job_id}"
        return SettlementPending(
            "the payment's settlement was sent but is not confirmed yet: the job starts once "
            f"it is (or the reservation is released if it never lands); follow {url}",
            version=kept.version,
            receipt=receipt or {"success": False, "errorReason": requests.PENDING},
            job_id=kept.job_id,
            service=kept.service,
            status=requests.PENDING,
            status_url=url,
        )

    # -- settlements not confirmed in time ---------------------------------------------------
    async def resolve_pending_payments(self) -> None:
        """Create the jobs whose settlement is now confirmed, release the requests whose
        transfer never landed; leave the others for the next round."""
        if self.x402 is None:
            return
        for kept in await requests.pending(self.db):
            outcome = await self.x402.resolve(kept.payment_id, kept.version)
            if outcome is None:
                continue
            if isinstance(outcome, Released):
                await requests.resolve(self.db, kept.id, requests.RELEASED, outcome.reason)
                continue
            await self._submit_confirmed(kept, outcome)

    async def _submit_confirmed(self, kept: PaidRequest, accepted: Accepted) -> None:
        try:
            service, model = await self._admit(kept.service, kept.input, kept.webhook_url)
            fetched = await self._media(kept.input)
            await self._create_promised(kept, accepted, service, model, fetched)
        except GpubridgeError as exc:
            # Paid but refused now (no backend any more, a media URL gone): the payment stays
            # in the wallet account.
            await requests.resolve(self.db, kept.id, requests.REFUSED, exc.message)
            log.info("a confirmed x402 request was refused", extra={"job_id": kept.job_id})
            return
        await requests.resolve(self.db, kept.id, requests.SUBMITTED)

    async def _create_promised(
        self,
        kept: PaidRequest,
        accepted: Accepted,
        service: Service,
        model: ModelSpec,
        fetched: dict[str, MediaInput],
    ) -> None:
        try:
            submitted = await self._create(
                accepted.account,
                service,
                model,
                kept.input,
                fetched,
                webhook_url=kept.webhook_url,
                idempotency_key=kept.idempotency_key,
                priority=kept.priority,
                job_id=kept.job_id,
            )
        except IntegrityError:
            return  # another replica created this job (its id is unique)
        if submitted.job.id != kept.job_id:
            await requests.move_job(self.db, kept.id, submitted.job.id)

    async def pending_view(self, job_id: str) -> dict[str, Any] | None:
        """A job id a paid request was promised, while it has no job: its state, or None."""
        kept = await requests.by_job(self.db, job_id)
        if kept is None or kept.status == requests.SUBMITTED:
            return None
        view: dict[str, Any] = {"id": job_id, "service": kept.service, "status": kept.status}
        if kept.error is not None:
            view["error"] = {"code": kept.status, "message": kept.error}
        return view
