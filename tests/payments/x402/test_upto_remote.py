"""The facilitator's upto address, learned from its ``GET /supported``: only for this network
and scheme, asked again a minute after a facilitator that did not answer, and no upto offered
until it is known."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gpubridge.payments.x402 import X402Config
from gpubridge.payments.x402.errors import PaymentRejected
from gpubridge.payments.x402.requirements import Offer
from gpubridge.payments.x402.settlement import FacilitatorSettlement
from gpubridge.payments.x402.upto_remote import RemoteUptoEngine
from gpubridge.settings import Settings
from tests.support.gateway_app import TEST_RECIPIENT

CONFIG = X402Config.from_settings(
    Settings(x402_pay_to=TEST_RECIPIENT, x402_facilitator_url="http://facilitator.test")
)
ADDRESS = "0x" + "ab" * 20


def engine(answer: Any, asked: list[str]) -> RemoteUptoEngine:
    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if answer is None:
            raise httpx.ConnectError("down")
        return httpx.Response(200, json=answer)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handle))

    async def no_chain() -> Any:
        raise AssertionError("no chain read expected")

    return RemoteUptoEngine(CONFIG, FacilitatorSettlement(CONFIG, client), no_chain)


def kind(scheme: str, network: str) -> dict[str, Any]:
    return {
        "x402Version": 2,
        "scheme": scheme,
        "network": network,
        "extra": {"facilitatorAddress": ADDRESS},
    }


async def test_the_address_is_the_one_named_for_upto_on_this_network():
    asked: list[str] = []
    answer = {"kinds": [kind("exact", CONFIG.network), kind("upto", "eip155:1"), "junk"]}
    remote = engine(answer, asked)
    await remote.prepare()
    assert remote.facilitator is None
    answer["kinds"].append(kind("upto", CONFIG.network))
    await remote.prepare()  # asked a moment ago: not again yet
    assert asked == ["/supported"] and remote.facilitator is None
    remote._asked_at -= 61
    await remote.prepare()
    assert remote.facilitator == ADDRESS
    await remote.prepare()
    assert asked == ["/supported", "/supported"]


async def test_an_unreachable_facilitator_offers_no_upto_and_refuses_one():
    remote = engine(None, [])
    await remote.prepare()
    assert remote.facilitator is None
    with pytest.raises(PaymentRejected) as refused:
        await remote.verify(None, Offer(1, "", ""))  # type: ignore[arg-type]
    assert refused.value.reason == "unsupported_scheme"
