"""The x402 payment use case: challenge, screen, verify, reserve, settle, credit.

``accept`` turns a payment into credits on the payer's wallet account, or refuses it with the
requirements again. It never starts work: the gateway submits the job afterwards through the
ordinary hold path, so the job's actual cost is captured from these credits and the rest
(the excess, or all of it when the job fails) stays in the wallet account.

The Ethereum libraries (web3, eth-account) are imported on the first payment, not with the
gateway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gpubridge.db import Database
from gpubridge.payments.x402 import codec, errors, store
from gpubridge.payments.x402.codec import (
    PAYMENT_IDENTIFIER,
    ExactPayment,
    Payment,
    TxHashPayment,
    UptoPayment,
    payment_identifier_declaration,
)
from gpubridge.payments.x402.config import X402Config, x402_off_reason
from gpubridge.payments.x402.errors import (
    PaymentNetworkUnavailable,
    PaymentRejected,
    PaymentUnconfirmed,
    Unconfirmed,
    X402Required,
)
from gpubridge.payments.x402.metering import Funding, Metering, receipt
from gpubridge.payments.x402.outcomes import Accepted, Released, settled_receipt
from gpubridge.payments.x402.requirements import Offer, challenge_body, payment_required
from gpubridge.payments.x402.screening import DenyList, OracleScreen, Screen, Screening
from gpubridge.payments.x402.settlement import (
    DirectSettlement,
    FacilitatorSettlement,
    Settlement,
)
from gpubridge.payments.x402.txproof import RequestBinding
from gpubridge.payments.x402.upto import UptoEngine
from gpubridge.payments.x402.upto_remote import RemoteUptoEngine
from gpubridge.payments.x402.wallets import ensure_wallet_account
from gpubridge.settings import Settings

if TYPE_CHECKING:
    import httpx

    from gpubridge.payments.x402.chain import Chain

log = logging.getLogger(__name__)

FACILITATOR_TIMEOUT_S = 60.0
ALREADY_USED = (
    "this transaction was already used: it paid for a request or a top-up, or was credited "
    "to its sender's wallet account"
)


class X402:
    """Accepts x402 payments for this server's terms (``X402Config``)."""

    def __init__(
        self, config: X402Config, db: Database, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self._chain: Chain | None = None
        self._owns_chain = False
        self._http: httpx.AsyncClient | None = None
        screens: list[Screen] = [DenyList(config.deny_list)]
        if config.sanctions_oracle is not None:
            screens.append(OracleScreen(self.chain, config.sanctions_oracle))
        self.screening = Screening(screens)
        self.settlement: Settlement | None = None
        self.metering: Metering | None = None
        """Metered (``upto``) payments: through the facilitator, or in process with the
        settlement key."""
        if config.facilitator_url is not None:
            remote = FacilitatorSettlement(config, self._facilitator_client())
            self.settlement = remote
            self.metering = Metering(config, db, RemoteUptoEngine(config, remote, self.chain))
        elif config.settlement_key is not None:
            self.settlement = DirectSettlement(config, self.chain)
            self.metering = Metering(config, db, UptoEngine(config))

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> X402 | None:
        """x402 on these settings, or None while it is off (``x402_off_reason``)."""
        if x402_off_reason(settings) is not None:
            return None
        return cls(X402Config.from_settings(settings), db)

    # -- plumbing -----------------------------------------------------------------------
    async def chain(self) -> Chain:
        """The chain client, connected on first use."""
        if self._chain is None:
            from gpubridge.payments.x402.chain import Chain

            self._chain = Chain.connect(self.config.rpc_url)
            self._owns_chain = True
        return self._chain

    def use_chain(self, chain: Chain) -> None:
        """Talk to this chain client instead of ``rpc_url`` (a local node, tests)."""
        self._chain = chain
        self._owns_chain = False
        if self.metering is not None:
            self.metering.engine.use_web3(chain.sync_web3())

    def _facilitator_client(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx  # only a gateway that settles through a facilitator needs it

            self._http = httpx.AsyncClient(timeout=FACILITATOR_TIMEOUT_S)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._chain is not None and self._owns_chain:
            await self._chain.close()

    async def prepare(self) -> None:
        """Learn what the challenge needs from elsewhere (the facilitator's upto address)."""
        if self.metering is not None:
            await self.metering.engine.prepare()

    # -- the challenge --------------------------------------------------------------------
    def offer(
        self,
        amount_micros: int,
        resource: str,
        description: str,
        extensions: Mapping[str, Any] | None = None,
        *,
        metered: bool = False,
    ) -> Offer:
        """What a request costs; ``extensions`` go into its 402 (``bazaar``: how to call it),
        with ``payment-identifier`` (a paid retry naming the same identifier gets the first
        result). A ``metered`` request (priced per token or second) is also offered as
        ``upto`` when this server settles itself."""
        declared = {**(extensions or {}), PAYMENT_IDENTIFIER: payment_identifier_declaration()}
        facilitator = (
            self.metering.engine.facilitator if metered and self.metering is not None else None
        )
        return Offer(
            amount_micros, resource, description, extensions=declared, upto_facilitator=facilitator
        )

    def required(
        self,
        offer: Offer,
        reason: str = errors.PAYMENT_REQUIRED,
        message: str = "this request needs an x402 payment or an API key",
    ) -> X402Required:
        """The 402 asking for ``offer``; ``reason`` says why an earlier payment did not pay.
        Its v2 object also offers sign-in with the wallet (``sign_in``) for HTTP resources."""
        from gpubridge.payments.x402.sign_in import SIGN_IN_WITH_X, declaration

        v2 = payment_required(self.config, offer, reason)
        sign_in = declaration(self.config, offer.resource)
        if sign_in is not None:
            v2["extensions"] = {**v2.get("extensions", {}), SIGN_IN_WITH_X: sign_in}
        return X402Required(
            message,
            reason=reason,
            payment_required=v2,
            body=challenge_body(self.config, offer, reason, message, v2),
        )

    async def sign_in(self, header: str, offer: Offer) -> str:
        """The wallet that signed in with this ``SIGN-IN-WITH-X`` header (once, for this
        server); ``X402Required`` with the reason when it does not sign in,
        ``SanctionedPayer`` (403) for a listed wallet."""
        from gpubridge.payments.x402.sign_in import signed_in

        try:
            address = await signed_in(self.db, self.config, header, offer.resource)
        except PaymentRejected as exc:
            log.info("x402 sign-in refused", extra={"reason": exc.reason})
            raise self.required(offer, exc.reason, exc.message) from None
        await self.screening.check(address)
        return address

    def decode(self, payment: str | dict[str, Any]) -> Payment:
        """A payment header value (base64 JSON) or decoded object; ``MalformedPayment`` (400)."""
        if isinstance(payment, str):
            return codec.decode_header(payment)
        return codec.from_object(payment)

    # -- accepting a payment --------------------------------------------------------------
    async def accept(
        self,
        payment: Payment,
        offer: Offer,
        binding: RequestBinding | None = None,
        *,
        job_id: str | None = None,
    ) -> Accepted:
        """Screen, verify, reserve, settle and credit ``payment``; ``X402Required`` (402) when
        it does not pay for ``offer``, ``SanctionedPayer`` (403) for a listed payer. A metered
        (``upto``) payment is authorized for the job ``job_id`` and settled once it ends."""
        await self.screening.check(payment.payer)
        try:
            if isinstance(payment, TxHashPayment):
                return await self._accept_tx_hash(payment, offer, binding)
            if isinstance(payment, UptoPayment):
                return await self._accept_upto(payment, offer, job_id)
            return await self._accept_exact(payment, offer)
        except PaymentRejected as exc:
            log.info("x402 payment refused", extra={"reason": exc.reason})
            raise self.required(offer, exc.reason, exc.message) from None

    async def _accept_exact(self, payment: ExactPayment, offer: Offer) -> Accepted:
        from gpubridge.payments.x402.sdk_exact import check

        if self.settlement is None:
            raise PaymentNetworkUnavailable(
                "this server cannot settle x402 authorizations (no settlement key or "
                "facilitator is configured); pay with a transaction hash instead"
            )
        check(self.config, payment, offer, self.clock())
        await self.settlement.verify(payment, offer)
        auth = payment.authorization
        try:
            payment_id = await store.reserve_authorization(
                self.db,
                network=self.config.network,
                asset=self.config.asset,
                payer=auth.payer,
                nonce=auth.nonce,
                valid_before=auth.valid_before,
                amount_micros=auth.value,
            )
        except store.AlreadyUsed:
            raise errors.authorization_used() from None

        async def sent(tx_hash: str) -> None:
            await store.record_transaction(self.db, payment_id, tx_hash)

        network = self.config.network if payment.version == 2 else self.config.network_v1
        try:
            tx_hash = await self.settlement.settle(payment, offer, sent)
        except PaymentRejected as exc:
            await store.fail(self.db, payment_id, exc.reason)
            raise
        except Unconfirmed as exc:
            log.warning("x402 settlement not confirmed in time", extra={"payment_id": payment_id})
            receipt = {
                **settled_receipt(exc.tx_hash, network, auth.payer, auth.value),
                "success": False,
                "errorReason": errors.SETTLEMENT_PENDING,
            }
            raise PaymentUnconfirmed(payment_id, payment.version, receipt) from None
        account = await ensure_wallet_account(self.db, auth.payer)
        await store.settle(
            self.db, payment_id, account_id=account.id, tx_hash=tx_hash, amount_micros=auth.value
        )
        return Accepted(
            account,
            payment_id,
            auth.value,
            payment.version,
            settled_receipt(tx_hash, network, auth.payer, auth.value),
        )

    async def _accept_upto(
        self, payment: UptoPayment, offer: Offer, job_id: str | None
    ) -> Accepted:
        if self.metering is None or offer.upto_facilitator is None or job_id is None:
            raise PaymentRejected(
                errors.UNSUPPORTED_SCHEME, "this request is not offered with scheme upto"
            )
        account, payment_id = await self.metering.authorize(payment, offer, job_id)
        authorized = receipt(self.config.network, payment.payer, None)
        return Accepted(account, payment_id, payment.authorization.amount, 2, authorized, True)

    def funding(self, payment: Accepted | None) -> Funding | None:
        """For a metered payment: what credits its job's hold, in the transaction that holds
        it (the credit pays that job alone). None for any other payment."""
        if payment is None or not payment.metered or self.metering is None:
            return None
        return self.metering.funding(payment.payment_id, payment.account.id)

    async def finish_metered(self, payment: Accepted, *, abandoned: bool = False) -> Accepted:
        """``payment`` settled for what its job used once the job has ended (or nothing when
        ``abandoned``: the job was never created); unchanged while the job runs."""
        if not payment.metered or self.metering is None:
            return payment
        settled = await self.metering.finish(payment.payment_id, abandoned=abandoned)
        if settled is None:
            return payment
        done = receipt(self.config.network, payment.payer, settled)
        return Accepted(payment.account, payment.payment_id, settled.amount_micros, 2, done, True)

    async def _accept_tx_hash(
        self, payment: TxHashPayment, offer: Offer, binding: RequestBinding | None
    ) -> Accepted:
        from gpubridge.payments.x402.txproof import check_binding, verify_tx_payment

        check_binding(self.config, payment, binding)
        if await store.tx_hash_used(self.db, self.config.chain_id, payment.tx_hash):
            raise PaymentRejected(errors.TRANSACTION_ALREADY_USED, ALREADY_USED)
        verified = await verify_tx_payment(
            self.config, await self.chain(), payment, offer, self.clock()
        )
        # From here the transfer is the payer's money at this server, whether or not it pays
        # this request: it is credited to the payer's wallet account, and consumed, either way.
        account = await ensure_wallet_account(self.db, payment.payer)
        refusal = verified.refusal
        try:
            payment_id = await store.record_tx_payment(
                self.db,
                chain_id=self.config.chain_id,
                network=self.config.network,
                asset=self.config.asset,
                payer=payment.payer,
                tx_hash=payment.tx_hash,
                transfers=verified.transfers,
                account_id=account.id,
                refused=refusal.reason if refusal is not None else None,
            )
        except store.AlreadyUsed:
            raise PaymentRejected(errors.TRANSACTION_ALREADY_USED, ALREADY_USED) from None
        if refusal is not None:
            log.info(
                "x402 transfer refused and credited to its sender",
                extra={"reason": refusal.reason, "payment_id": payment_id},
            )
            raise PaymentRejected(
                refusal.reason,
                f"{refusal.message}; the transfer was credited to the wallet account of "
                f"{payment.payer.lower()}, claim it with POST /account/wallet/claim",
            )
        paid = verified.amount
        receipt = settled_receipt(payment.tx_hash, self.config.network_v1, payment.payer, paid)
        return Accepted(account, payment_id, paid, 1, receipt)

    # -- settlements not confirmed in time --------------------------------------------------
    async def reconcile(self) -> None:
        """Settle or release reservations whose request gave up with the outcome unknown
        (``pending.reconcile``), and settle the metered payments whose job has ended."""
        from gpubridge.payments.x402.pending import reconcile

        await reconcile(self)
        if self.metering is not None:
            await self.metering.finish_due()

    async def resolve(self, payment_id: str, version: int) -> Accepted | Released | None:
        """What became of a payment whose settlement was not confirmed in time: ``Accepted``
        (credited, once), ``Released`` (it can no longer pay), or None (not known yet)."""
        from gpubridge.payments.x402.pending import resolve

        return await resolve(self, payment_id, version)

    async def accepted(self, payment_id: str, version: int) -> Accepted | None:
        """A settled payment as ``accept`` answered it (for a retry that replays its request)."""
        record = await store.payment(self.db, payment_id)
        if record is None or record.status != store.SETTLED or record.account_id is None:
            return None
        account = await ensure_wallet_account(self.db, record.payer)
        network = record.network if version == 2 else self.config.network_v1
        receipt = settled_receipt(record.tx_hash or "", network, record.payer, record.amount_micros)
        return Accepted(account, payment_id, record.amount_micros, version, receipt)

    def check_signed(self, payment: Payment, offer: Offer) -> None:
        """``X402Required`` unless ``payment`` is an authorization its payer signed that would
        pay ``offer`` (checked without the chain, and nothing is settled)."""
        from gpubridge.payments.x402.sdk_exact import check

        if not isinstance(payment, ExactPayment):
            return
        try:
            check(self.config, payment, offer, self.clock())
        except PaymentRejected as exc:
            raise self.required(offer, exc.reason, exc.message) from None
