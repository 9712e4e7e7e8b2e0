"""USDC top-ups: credit packages paid with a plain USDC transfer to the x402 recipient.

An invoice asks for an exact amount: the package price plus the 0.5% fee, plus a small offset
(1 to 9999 atomic units, under one cent) that no other open invoice uses. The unique
``open_amount_units`` column holds that amount while the invoice is open, so a transfer of
exactly that amount names its invoice: no per-account deposit address (and no key per
address) is needed. Paying marks the invoice ``paid`` with the transaction hash (unique) and
credits the package in the same database transaction, with the ledger reference
``usdc:<tx hash>``; a hash therefore credits once, whoever brings it (the watcher, ``confirm``).

A transfer counts for an invoice when it was mined between the invoice's creation (less a
minute of clock slack) and its expiry; a transfer mined later credits nothing (the operator
refunds it by hand). The paid transfer is consumed (``gpubridge.payments.transfers``, a key
shared with x402) in the same transaction, so a transfer offered at once as an x402 proof and
to an invoice is credited by one of them only.

The chain client comes from ``gpubridge.payments.x402.chain`` and is imported on first use.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db import Database
from gpubridge.db.engine import as_utc
from gpubridge.db.tables import chain_cursors, crypto_invoices
from gpubridge.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from gpubridge.ids import random_uuid
from gpubridge.money import micros_to_usd
from gpubridge.payments import ledger
from gpubridge.payments.auto_topup import credit_once
from gpubridge.payments.packages import Package, package_named
from gpubridge.payments.transfers import USDC, consume, hash_used
from gpubridge.payments.x402.config import X402Config, recipient_missing, same_address
from gpubridge.payments.x402.txlogs import Transfer, transfers_in
from gpubridge.settings import Settings

if TYPE_CHECKING:
    from gpubridge.payments.x402.chain import Chain

log = logging.getLogger(__name__)

FEE_PER_MILLE = 5
"""The crypto top-up fee: 0.5% of the package price."""
MAX_OFFSET_UNITS = 9999
OFFSET_ATTEMPTS = 20
CREATED_SLACK_S = 60
"""A transfer mined this long before its invoice was created still counts (clock skew)."""
EXPIRY_GRACE_S = 600
"""An expired invoice keeps its amount reserved this long, for transfers mined before expiry
that are still waiting for confirmations."""
CURSOR_NAME = "usdc-topups"
UNREACHABLE_WARNING_EVERY_S = 60.0
"""While the RPC node cannot be reached, the watcher warns at most this often."""

OPEN, PAID, EXPIRED = "open", "paid", "expired"


class CryptoTopupsNotConfigured(ServiceUnavailable):
    code = "crypto_topups_not_configured"


class ChainUnavailable(ServiceUnavailable):
    code = "chain_unavailable"


class TransactionAlreadyUsed(Conflict):
    code = "transaction_already_used"


def invoice_price_units(package: Package) -> int:
    """The package price plus the fee, in USDC atomic units (USDC has 6 decimals, as micros)."""
    return package.price_micros * (1000 + FEE_PER_MILLE) // 1000


def usdc_text(units: int) -> str:
    """Atomic units as a USDC amount with all 6 decimals (``10.050017``)."""
    return f"{units // 1_000_000}.{units % 1_000_000:06d}"


def _datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class CryptoTopups:
    """Invoices for USDC top-ups, and the crediting of transfers that pay them."""

    def __init__(
        self,
        db: Database,
        config: X402Config | None,
        *,
        ttl_s: int = 3600,
        scan_blocks: int = 2000,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        off_reason: str | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.off_reason = off_reason
        """Why USDC top-ups are off (``config`` is None), for the operator's start-up log."""
        self.ttl_s = ttl_s
        self.scan_blocks = max(1, scan_blocks)
        self.clock = clock
        self.monotonic = monotonic
        self._warned_at: float | None = None
        """When the watcher last warned that the RPC node is unreachable (``monotonic``)."""
        self._chain: Chain | None = None
        self._owns_chain = False

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> CryptoTopups:
        reason = crypto_topups_off_reason(settings)
        config = X402Config.from_settings(settings) if reason is None else None
        return cls(
            db,
            config,
            ttl_s=settings.crypto_invoice_ttl_s,
            scan_blocks=settings.crypto_scan_blocks,
            off_reason=reason,
        )

    # -- plumbing -----------------------------------------------------------------------
    def require_config(self) -> X402Config:
        if self.config is None:
            raise CryptoTopupsNotConfigured(
                "USDC top-ups are not configured on this server (set GPUBRIDGE_X402_PAY_TO "
                "to the wallet that receives USDC, and keep GPUBRIDGE_CRYPTO_TOPUPS_ENABLED true)"
            )
        return self.config

    async def chain(self) -> Chain:
        """The chain client, connected on first use."""
        if self._chain is None:
            from gpubridge.payments.x402.chain import Chain

            self._chain = Chain.connect(self.require_config().rpc_url)
            self._owns_chain = True
        return self._chain

    def use_chain(self, chain: Chain) -> None:
        """Talk to this chain client instead of the configured RPC node."""
        self._chain = chain
        self._owns_chain = False

    async def close(self) -> None:
        if self._chain is not None and self._owns_chain:
            await self._chain.close()
        self._chain = None

    def _now(self) -> datetime:
        return _datetime(self.clock())

    # -- invoices -------------------------------------------------------------------------
    async def create_invoice(self, account_id: str, package_name: object) -> dict[str, Any]:
        """An open invoice for a package, with an exact amount no other open invoice asks."""
        package = package_named(package_name)
        config = self.require_config()
        base = invoice_price_units(package)
        for _ in range(OFFSET_ATTEMPTS):
            async with self.db.connect() as conn:
                taken = {
                    int(v)
                    for v in (
                        await conn.scalars(
                            select(crypto_invoices.c.open_amount_units).where(
                                crypto_invoices.c.open_amount_units.between(
                                    base + 1, base + MAX_OFFSET_UNITS
                                )
                            )
                        )
                    ).all()
                }
            free = [o for o in range(1, MAX_OFFSET_UNITS + 1) if base + o not in taken]
            if not free:
                break
            amount = base + random.choice(free)
            now = self._now()
            row = {
                "id": random_uuid(),
                "account_id": account_id,
                "package": package.name,
                "credits_micros": package.credits_micros,
                "amount_units": amount,
                "open_amount_units": amount,
                "network": config.network,
                "asset": config.asset,
                "recipient": config.pay_to,
                "status": OPEN,
                "created_at": now,
                "expires_at": now + timedelta(seconds=self.ttl_s),
            }
            try:
                async with self.db.begin() as conn:
                    await conn.execute(insert(crypto_invoices).values(**row))
            except IntegrityError:
                continue  # a concurrent invoice took this amount: pick another
            return self._describe(row, config)
        raise ServiceUnavailable(
            "too many open USDC invoices for this package; try again later",
            code="crypto_invoices_exhausted",
        )

    async def view(self, account_id: str, invoice_id: str) -> dict[str, Any]:
        config = self.require_config()
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    select(crypto_invoices).where(
                        crypto_invoices.c.id == invoice_id,
                        crypto_invoices.c.account_id == account_id,
                    )
                )
            ).first()
        if row is None:
            raise NotFound("no such invoice", code="invoice_not_found")
        return self._describe(dict(row._mapping), config)

    def _describe(self, row: dict[str, Any], config: X402Config) -> dict[str, Any]:
        amount = int(row["amount_units"])
        paid_at = as_utc(row.get("paid_at"))
        expires_at = as_utc(row["expires_at"])
        assert expires_at is not None
        return {
            "invoice_id": row["id"],
            "status": row["status"],
            "package": row["package"],
            "recipient": row["recipient"],
            "asset": row["asset"],
            "network": row["network"],
            "chain_id": config.chain_id,
            "amount_usdc": usdc_text(amount),
            "amount_units": str(amount),
            "credits_usd": micros_to_usd(int(row["credits_micros"])),
            "expires_at": expires_at.isoformat(),
            "tx_hash": row.get("tx_hash"),
            "paid_at": paid_at.isoformat() if paid_at is not None else None,
        }

    # -- crediting ------------------------------------------------------------------------
    async def apply_transfer(
        self,
        tx_hash: str,
        transfer: Transfer,
        mined_at: float,
        *,
        account_id: str | None = None,
    ) -> tuple[str, dict[str, Any] | None]:
        """Pay the open invoice asking exactly the transfer's value with it, and credit it.

        Outcomes: ``credited``, ``already_used`` (the hash paid before, or the transfer was
        credited by x402), ``no_match`` (no open
        invoice of that amount, of ``account_id`` when given), ``expired`` (mined after the
        invoice expired; the invoice is then closed), ``too_early`` (mined before the invoice
        existed). The invoice row comes back with ``credited``.
        """
        tx = tx_hash.lower()
        for attempt in range(3):
            try:
                async with self.db.begin() as conn:
                    return await self._apply(conn, tx, transfer, _datetime(mined_at), account_id)
            except IntegrityError:
                # A concurrent caller recorded this hash, this transfer or this invoice first
                # (an x402 proof, the watcher, confirm): look again.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _apply(
        self,
        conn: AsyncConnection,
        tx: str,
        transfer: Transfer,
        mined_at: datetime,
        account_id: str | None,
    ) -> tuple[str, dict[str, Any] | None]:
        config = self.require_config()
        if await hash_used(conn, config.chain_id, tx):
            return "already_used", None
        query = select(crypto_invoices).where(
            crypto_invoices.c.open_amount_units == transfer.value,
            crypto_invoices.c.status == OPEN,
        )
        if account_id is not None:
            query = query.where(crypto_invoices.c.account_id == account_id)
        row = (await conn.execute(query)).first()
        if row is None:
            # On PostgreSQL each statement sees what was committed before it: a caller that
            # paid the invoice with this hash after the first look closed it, and is seen now.
            if await hash_used(conn, config.chain_id, tx):
                return "already_used", None
            return "no_match", None
        expires_at = as_utc(row.expires_at)
        created_at = as_utc(row.created_at)
        assert expires_at is not None and created_at is not None
        if mined_at > expires_at:
            await conn.execute(
                update(crypto_invoices)
                .where(crypto_invoices.c.id == row.id, crypto_invoices.c.status == OPEN)
                .values(status=EXPIRED, open_amount_units=None)
            )
            return "expired", None
        if mined_at < created_at - timedelta(seconds=CREATED_SLACK_S):
            return "too_early", None
        await ledger.lock_account(conn, row.account_id)
        result = await conn.execute(
            update(crypto_invoices)
            .where(crypto_invoices.c.id == row.id, crypto_invoices.c.status == OPEN)
            .values(status=PAID, open_amount_units=None, tx_hash=tx, paid_at=self._now())
        )
        if result.rowcount != 1:
            raise IntegrityError("invoice paid concurrently", None, Exception())
        await consume(
            conn,
            chain_id=config.chain_id,
            tx_hash=tx,
            asset=config.asset,
            transfers=[transfer],
            used_for=USDC,
            reference=f"usdc:{tx}",
            account_id=row.account_id,
        )
        await credit_once(
            conn,
            row.account_id,
            int(row.credits_micros),
            house="usdc",
            reference=f"usdc:{tx}",
            memo=f"USDC top-up {row.package}",
        )
        log.info("usdc invoice %s paid by %s", row.id, tx)
        paid = dict(row._mapping)
        paid.update(status=PAID, tx_hash=tx, paid_at=self._now(), open_amount_units=None)
        return "credited", paid

    async def confirm(self, account_id: str, tx_hash: object) -> dict[str, Any]:
        """Credit one of this account's open invoices from a transaction, now."""
        from gpubridge.payments.x402.chain import ChainUnavailable as RpcUnavailable

        config = self.require_config()
        tx = _tx_hash(tx_hash)
        async with self.db.connect() as conn:
            used = await conn.scalar(
                select(crypto_invoices.c.id).where(crypto_invoices.c.tx_hash == tx)
            )
        if used is not None:
            raise TransactionAlreadyUsed("this transaction already paid an invoice")
        chain = await self.chain()
        try:
            receipt = await chain.receipt(tx)
            if receipt is None:
                raise InvalidInput(
                    "the transaction is unknown or not mined yet", code="transaction_not_found"
                )
            latest = await chain.block_number()
            mined_at = await chain.block_timestamp(receipt.block_number)
        except RpcUnavailable:
            raise ChainUnavailable("the payment network could not be reached") from None
        if receipt.status != 1:
            raise InvalidInput("the transaction failed on chain", code="transaction_failed")
        transfers = [
            t
            for t in transfers_in(receipt, config.asset)
            if same_address(t.recipient, config.pay_to)
        ]
        if not transfers:
            raise InvalidInput(
                f"the transaction has no {config.asset} transfer to {config.pay_to}",
                code="transfer_not_found",
            )
        async with self.db.connect() as conn:
            open_amounts = set(
                int(v)
                for v in (
                    await conn.scalars(
                        select(crypto_invoices.c.open_amount_units).where(
                            crypto_invoices.c.account_id == account_id,
                            crypto_invoices.c.status == OPEN,
                        )
                    )
                ).all()
            )
        matching = [t for t in transfers if t.value in open_amounts]
        if not matching:
            raise InvalidInput(
                f"the transfer of {', '.join(str(t.value) for t in transfers)} atomic units "
                "matches none of this account's open invoices",
                code="amount_mismatch",
            )
        transfer = matching[0]
        confirmations = latest - receipt.block_number + 1
        needed = config.confirmations_for(transfer.value)
        if confirmations < needed:
            raise InvalidInput(
                f"the transaction has {confirmations} confirmations; {needed} are needed "
                "(it is credited automatically once it has them)",
                code="not_enough_confirmations",
            )
        outcome, row = await self.apply_transfer(tx, transfer, mined_at, account_id=account_id)
        if outcome == "already_used":
            raise TransactionAlreadyUsed("this transaction was already used for a payment")
        if outcome == "expired":
            raise InvalidInput(
                "the transfer was mined after the invoice expired", code="invoice_expired"
            )
        if outcome == "too_early":
            raise InvalidInput(
                "the transfer was mined before the invoice was created", code="transfer_too_early"
            )
        if row is None:
            raise InvalidInput("no open invoice matches this transfer", code="amount_mismatch")
        return self._describe(row, config)

    # -- what the watcher keeps -----------------------------------------------------------
    async def expire_stale(self) -> int:
        """Close open invoices past their expiry (and its grace): their amounts are free."""
        cutoff = self._now() - timedelta(seconds=EXPIRY_GRACE_S)
        async with self.db.begin() as conn:
            result = await conn.execute(
                update(crypto_invoices)
                .where(crypto_invoices.c.status == OPEN, crypto_invoices.c.expires_at < cutoff)
                .values(status=EXPIRED, open_amount_units=None)
            )
        return int(result.rowcount or 0)

    async def open_amounts(self) -> set[int]:
        async with self.db.connect() as conn:
            values = (
                await conn.scalars(
                    select(crypto_invoices.c.open_amount_units).where(
                        crypto_invoices.c.status == OPEN
                    )
                )
            ).all()
        return {int(v) for v in values if v is not None}

    async def cursor(self) -> int | None:
        async with self.db.connect() as conn:
            value = await conn.scalar(
                select(chain_cursors.c.last_block).where(chain_cursors.c.name == CURSOR_NAME)
            )
        return int(value) if value is not None else None

    async def save_cursor(self, block: int | None) -> None:
        """Record the last block scanned (``None`` forgets it)."""
        where = chain_cursors.c.name == CURSOR_NAME
        try:
            async with self.db.begin() as conn:
                if block is None:
                    await conn.execute(delete(chain_cursors).where(where))
                    return
                values = {"last_block": block, "updated_at": self._now()}
                result = await conn.execute(update(chain_cursors).where(where).values(**values))
                if result.rowcount == 0:
                    await conn.execute(insert(chain_cursors).values(name=CURSOR_NAME, **values))
        except IntegrityError:
            pass  # another gateway process saved it first; the next pass reads on from there

    async def watch(self) -> int:
        """One watcher pass: how many invoices it paid.

        An RPC node that cannot be reached pays nothing this pass (the next pass reads the
        same blocks); the operator hears of it once per ``UNREACHABLE_WARNING_EVERY_S``, in one
        line, not with a traceback each pass.
        """
        if self.config is None:
            return 0
        from gpubridge.payments.usdc_watcher import scan_once
        from gpubridge.payments.x402.chain import ChainUnavailable as RpcUnavailable

        try:
            paid = await scan_once(self)
        except RpcUnavailable as exc:
            self._unreachable(self.config, str(exc))
            return 0
        if self._warned_at is not None:
            self._warned_at = None
            log.info("the USDC top-up watcher reaches the RPC node again")
        return paid

    def _unreachable(self, config: X402Config, reason: str) -> None:
        now = self.monotonic()
        if self._warned_at is not None and now - self._warned_at < UNREACHABLE_WARNING_EVERY_S:
            return
        self._warned_at = now
        node = urlsplit(config.rpc_url).hostname or "(no host)"
        # The URL's path or query may hold the node provider's API key: show only the host.
        reason = reason.replace(config.rpc_url, node)
        log.warning(
            "the USDC top-up watcher cannot reach the RPC node %s (%s); open invoices are "
            "credited once it answers",
            node,
            reason,
        )


def crypto_topups_off_reason(settings: Settings) -> str | None:
    """Why USDC top-ups are off on this server; None when they are on."""
    if not settings.crypto_topups_enabled:
        return "GPUBRIDGE_CRYPTO_TOPUPS_ENABLED is false"
    return recipient_missing(settings)


def _tx_hash(value: object) -> str:
    if not isinstance(value, str) or len(value) != 66 or not value.startswith("0x"):
        raise InvalidInput(
            "txHash must be a 0x-prefixed 32-byte hex transaction hash",
            violations=[{"path": "txHash", "message": "not a transaction hash"}],
        )
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        raise InvalidInput(
            "txHash must be a 0x-prefixed 32-byte hex transaction hash",
            violations=[{"path": "txHash", "message": "not a transaction hash"}],
        ) from None
    return value.lower()
