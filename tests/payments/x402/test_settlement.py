"""Direct settlement's outcomes that a healthy local chain does not produce: a transaction mined
but reverted, a receipt without the transfer, a node that stops answering after the send
(the settlement is then pending: ``Unconfirmed``)."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from gpubridge.payments.x402.chain import ChainUnavailable, Log, Receipt
from gpubridge.payments.x402.codec import Authorization, ExactPayment
from gpubridge.payments.x402.config import X402Config
from gpubridge.payments.x402.errors import PaymentRejected, Unconfirmed
from gpubridge.payments.x402.requirements import Offer
from gpubridge.payments.x402.settlement import DirectSettlement
from gpubridge.payments.x402.txlogs import TRANSFER_TOPIC
from gpubridge.settings import Settings
from tests.support.gateway_app import TEST_RECIPIENT

CONFIG = X402Config.from_settings(
    Settings(x402_pay_to=TEST_RECIPIENT, x402_settlement_key="0x" + "11" * 32)
)
PAYER = "0x" + "ab" * 20
TX = "0x" + "cd" * 32
AUTH = Authorization(PAYER, CONFIG.pay_to.lower(), 3000, 0, int(time.time()) + 300, os.urandom(32))
PAYMENT = ExactPayment(1, "exact", "base", AUTH, bytes(65), None, {})
OFFER = Offer(3000, "https://api.example/run", "a job")


def transfer_log(value: int, token: str = CONFIG.asset) -> Log:
    return Log(
        token.lower(),
        (
            TRANSFER_TOPIC,
            bytes(12) + bytes.fromhex(PAYER[2:]),
            bytes(12) + bytes.fromhex(AUTH.to[2:]),
        ),
        value.to_bytes(32, "big"),
    )


class StubChain:
    def __init__(self, receipt: Receipt | Exception) -> None:
        self.outcome = receipt

    async def transfer_with_authorization(self, *args: Any) -> str:
        return TX

    async def wait_for_receipt(self, tx_hash: str, timeout_s: float) -> Receipt:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


async def settle(outcome: Receipt | Exception) -> tuple[str, list[str]]:
    async def chain() -> StubChain:
        return StubChain(outcome)

    sent: list[str] = []

    async def on_sent(tx_hash: str) -> None:
        sent.append(tx_hash)

    tx_hash = await DirectSettlement(CONFIG, chain).settle(PAYMENT, OFFER, on_sent)
    return tx_hash, sent


async def test_a_mined_transfer_of_the_amount_settles():
    assert await settle(Receipt(TX, 1, 10, (transfer_log(3000),))) == (TX, [TX])


@pytest.mark.parametrize(
    ("receipt", "reason"),
    [
        (Receipt(TX, 0, 10, ()), "transaction_failed"),
        (Receipt(TX, 1, 10, ()), "invalid_exact_evm_transfer_event_mismatch"),
        (Receipt(TX, 1, 10, (transfer_log(2999),)), "invalid_exact_evm_transfer_event_mismatch"),
        (
            Receipt(TX, 1, 10, (transfer_log(3000, "0x" + "99" * 20),)),
            "invalid_exact_evm_transfer_event_mismatch",
        ),
    ],
)
async def test_a_mined_settlement_that_did_not_pay_is_refused(receipt, reason):
    with pytest.raises(PaymentRejected) as caught:
        await settle(receipt)
    assert caught.value.reason == reason


async def test_a_node_that_stops_answering_after_the_send_leaves_the_settlement_pending():
    with pytest.raises(Unconfirmed) as caught:
        await settle(ChainUnavailable("timeout"))
    assert caught.value.tx_hash == TX
