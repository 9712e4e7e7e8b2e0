"""USDC top-up invoices and crediting, below the API: amounts, unique offsets under
concurrency, one credit per transaction hash, and no hash paying both an invoice and x402."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import Select
from web3 import AsyncHTTPProvider, AsyncWeb3

from gpubridge.payments import ledger
from gpubridge.payments.accounts import Accounts
from gpubridge.payments.crypto_topups import CryptoTopups, invoice_price_units, usdc_text
from gpubridge.payments.packages import PACKAGES
from gpubridge.payments.x402 import store
from gpubridge.payments.x402.chain import Chain
from gpubridge.payments.x402.config import X402Config
from gpubridge.payments.x402.store import record_tx_payment
from gpubridge.payments.x402.txlogs import Transfer
from gpubridge.settings import Settings
from tests.support.gateway_app import TEST_RECIPIENT

TX = "0x" + "12" * 32
PAYER = "0x" + "33" * 20


def transfer(value: int, log_index: int = 0) -> Transfer:
    """A transfer of ``value`` from ``PAYER`` to the recipient, as a receipt would show it."""
    return Transfer(PAYER, TEST_RECIPIENT.lower(), value, log_index)


def topups_on(database: object) -> CryptoTopups:
    config = X402Config.from_settings(
        Settings(database_url="sqlite+aiosqlite://", x402_pay_to=TEST_RECIPIENT)
    )
    return CryptoTopups(database, config)


async def new_account(database: object) -> str:
    accounts = Accounts(database, default_daily_limit_micros=50_000_000, cache_s=0)
    created = await accounts.register(f"{uuid.uuid4().hex[:8]}@example.com")
    return created.account.id


async def balance(database, account_id: str) -> int:
    async with database.connect() as conn:
        return await ledger.available_balance(conn, account_id)


def test_invoice_prices_are_the_package_price_plus_half_a_percent():
    assert {name: invoice_price_units(p) for name, p in PACKAGES.items()} == {
        "credits_10": 10_050_000,
        "credits_25": 25_125_000,
        "credits_50": 50_250_000,
        "credits_100": 100_500_000,
    }
    assert usdc_text(10_050_017) == "10.050017"
    assert usdc_text(7) == "0.000007"


async def test_invoices_created_at_once_all_ask_different_amounts(database):
    topups = topups_on(database)
    account = await new_account(database)
    async with asyncio.timeout(60):
        invoices = await asyncio.gather(
            *(topups.create_invoice(account, "credits_10") for _ in range(30))
        )
    amounts = {int(i["amount_units"]) for i in invoices}
    assert len(amounts) == 30
    assert all(10_050_001 <= a <= 10_059_999 for a in amounts)


async def test_one_transfer_pays_one_invoice_once_even_when_applied_at_once(database):
    topups = topups_on(database)
    account = await new_account(database)
    invoice = await topups.create_invoice(account, "credits_50")
    amount = int(invoice["amount_units"])
    async with asyncio.timeout(60):
        outcomes = await asyncio.gather(
            *(topups.apply_transfer(TX, transfer(amount), time.time()) for _ in range(5))
        )
    assert sorted(o for o, _ in outcomes) == ["already_used"] * 4 + ["credited"]
    assert await balance(database, account) == 55_000_000
    assert await topups.open_amounts() == set()
    # The hash paid an invoice: x402 cannot take it as a payment proof.
    assert await store.tx_hash_used(database, topups.config.chain_id, TX)


class PaidJustBeforeTheSearch:
    """A database whose transactions, just before they search for an open invoice, let
    ``other`` pay the invoice with the same transfer (and commit)."""

    def __init__(self, database: Any, other: CryptoTopups, amount: int) -> None:
        self.database, self.other, self.amount = database, other, amount
        self.outcomes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.database, name)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Any]:
        async with self.database.begin() as conn:
            yield _Searching(conn, self)


class _Searching:
    def __init__(self, conn: Any, paid: PaidJustBeforeTheSearch) -> None:
        self.conn, self.paid = conn, paid

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        searching = isinstance(statement, Select) and "open_amount_units" in str(
            statement.whereclause
        )
        if searching and not self.paid.outcomes:
            paid = self.paid
            outcome, _ = await paid.other.apply_transfer(TX, transfer(paid.amount), time.time())
            paid.outcomes.append(outcome)
        return await self.conn.execute(statement, *args, **kwargs)


@pytest.mark.postgres
async def test_a_hash_that_paid_the_invoice_between_two_looks_is_already_used(postgres):
    """The hash has paid nothing when a caller first looks; another caller pays the invoice
    with it just before the first searches for the invoice. The first is told the hash was
    used, not that no invoice matches (which would send a payer whose payment was credited to
    check its amount). PostgreSQL alone: SQLite's one connection runs the two in turn."""
    database = postgres
    topups = topups_on(database)
    account = await new_account(database)
    invoice = await topups.create_invoice(account, "credits_10")
    paid = PaidJustBeforeTheSearch(database, topups_on(database), int(invoice["amount_units"]))
    topups.db = paid
    async with asyncio.timeout(60):
        outcome, row = await topups.apply_transfer(TX, transfer(paid.amount), time.time())
    assert paid.outcomes == ["credited"]
    assert (outcome, row) == ("already_used", None)
    assert await balance(database, account) == 10_000_000


async def test_a_hash_that_paid_x402_cannot_pay_an_invoice(database):
    topups = topups_on(database)
    account = await new_account(database)
    invoice = await topups.create_invoice(account, "credits_10")
    paid = int(invoice["amount_units"])
    await record_tx_payment(
        database,
        chain_id=topups.config.chain_id,
        network="eip155:8453",
        asset=topups.config.asset,
        payer=PAYER,
        tx_hash=TX,
        transfers=[transfer(paid)],
        account_id=account,
    )
    outcome, _ = await topups.apply_transfer(TX, transfer(paid), time.time())
    assert outcome == "already_used"
    assert await balance(database, account) == paid  # the x402 payment's credit, nothing more


async def test_a_transfer_mined_before_the_invoice_existed_does_not_pay_it(database):
    topups = topups_on(database)
    account = await new_account(database)
    invoice = await topups.create_invoice(account, "credits_10")
    outcome, _ = await topups.apply_transfer(
        TX, transfer(int(invoice["amount_units"])), time.time() - 600
    )
    assert outcome == "too_early"
    assert await balance(database, account) == 0


@pytest.mark.parametrize("package", [None, 10, "credits_1000"])
async def test_an_unknown_package_is_refused(database, package):
    topups = topups_on(database)
    account = await new_account(database)
    with pytest.raises(Exception) as raised:
        await topups.create_invoice(account, package)
    assert getattr(raised.value, "status", None) == 422


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_rpc_node_is_one_warning_a_minute_without_a_traceback(
    database, caplog
):
    # The node URL carries a provider key in its path, as hosted nodes' URLs do.
    rpc_url = f"http://127.0.0.1:{closed_port()}/v2/provider-secret"
    settings = Settings(
        database_url="sqlite+aiosqlite://", x402_pay_to=TEST_RECIPIENT, x402_rpc_url=rpc_url
    )
    now = [1000.0]
    topups = CryptoTopups(database, X402Config.from_settings(settings), monotonic=lambda: now[0])
    # No retries: each pass fails at once (the gateway's client retries, then fails the same).
    provider = AsyncHTTPProvider(rpc_url, exception_retry_configuration=None)
    topups.use_chain(Chain(AsyncWeb3(provider)))
    await topups.create_invoice(await new_account(database), "credits_10")

    caplog.set_level(logging.INFO, logger="gpubridge.payments.crypto_topups")
    for at in (1000.0, 1030.0, 1059.0, 1061.0, 1090.0):  # maintenance passes, 30 s apart
        now[0] = at
        assert await topups.watch() == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2  # at 1000 s and at 1061 s
    for record in warnings:
        assert record.exc_info is None
        message = record.getMessage()
        assert "cannot reach the RPC node 127.0.0.1" in message
        assert "provider-secret" not in message
    assert await topups.open_amounts()  # the invoice stays open for the node's return
    await provider.disconnect()
