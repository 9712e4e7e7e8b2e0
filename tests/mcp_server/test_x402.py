"""x402 over MCP (the x402 MCP transport) on a local chain: the requirements an unpaid call
gets, a paid retry carrying ``_meta["x402/payment"]`` and its receipt in
``_meta["x402/payment-response"]``, and refused payments that charge nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from mcp_types import TextContent
from x402.extensions.bazaar import (
    McpDiscoveryExtension,
    extract_discovery_info,
    validate_discovery_extension,
)
from x402.extensions.bazaar.types import parse_discovery_extension
from x402.schemas import PaymentPayload, PaymentRequired

from gpubridge.payments.x402.errors import NONCE_ALREADY_USED, VALUE_MISMATCH
from tests.mcp_server.conftest import LLM_CALL, Running, StartGateway
from tests.support.local_chain import LocalChain

TOOL = "llm-4090"
PAYMENT = "x402/payment"
PAYMENT_RESPONSE = "x402/payment-response"


def texts(result: Any) -> list[str]:
    return [block.text for block in result.content if isinstance(block, TextContent)]


@pytest.fixture(scope="module")
def chain() -> Iterator[LocalChain]:
    yield LocalChain()


@pytest.fixture
async def paid(start_gateway: StartGateway, chain: LocalChain) -> AsyncIterator[Running]:
    """The gateway taking x402 payments on ``chain``, settled with the operator's key."""
    async with start_gateway(**chain.settings()) as running:
        assert running.gateway.x402 is not None
        running.gateway.x402.use_chain(chain.gateway_chain())
        yield running


def price_of(running: Running, arguments: dict[str, Any]) -> int:
    """The call's quoted price in USDC atomic units (micro-USD)."""
    estimate = running.gateway.estimate(TOOL, payload=arguments)
    return round(estimate["estimated_cost_usd"] * 1_000_000)


async def requirements(running: Running) -> dict[str, Any]:
    """What an unpaid call of the tool is asked to pay (the v2 ``accepts`` entry)."""
    async with running.client() as client:
        result = await client.call_tool(TOOL, LLM_CALL)
    assert result.is_error
    accepted: dict[str, Any] = result.structured_content["accepts"][0]
    return accepted


def payment(
    chain: LocalChain, payer: LocalAccount, accepted: dict[str, Any], *, amount: int | None = None
) -> dict[str, Any]:
    """The v2 PaymentPayload a client puts in ``_meta["x402/payment"]``."""
    value = int(accepted["amount"]) if amount is None else amount
    return {
        "x402Version": 2,
        "resource": {"url": f"mcp://tool/{TOOL}"},
        "accepted": accepted,
        "payload": chain.authorization(payer, value),
    }


def assert_asks_for_payment(result: Any, accepted: dict[str, Any], reason: str) -> None:
    assert result.is_error
    required = result.structured_content
    assert required["x402Version"] == 2
    assert required["error"] == reason
    assert required["resource"]["url"] == f"mcp://tool/{TOOL}"
    assert required["accepts"][0] == accepted
    assert json.loads(texts(result)[0]) == required
    assert not (result.meta or {}).get(PAYMENT_RESPONSE)


async def test_an_unpaid_call_gets_the_requirements_priced_for_the_call(paid, chain):
    async with paid.client() as client:
        result = await client.call_tool(TOOL, LLM_CALL)

    assert result.is_error
    required = result.structured_content
    assert required["x402Version"] == 2
    assert required["resource"]["url"] == f"mcp://tool/{TOOL}"
    assert [a["scheme"] for a in required["accepts"]] == ["exact", "upto"]
    assert required["accepts"][:1] == [
        {
            "scheme": "exact",
            "network": f"eip155:{chain.chain_id}",
            "amount": str(price_of(paid, LLM_CALL)),
            "asset": chain.usdc.address,
            "payTo": chain.recipient,
            "maxTimeoutSeconds": 300,
            "extra": {"name": "USD Coin", "version": "2"},
        }
    ]
    assert json.loads(texts(result)[0]) == required
    assert await paid.all_jobs() == 0


async def test_an_unpaid_call_describes_the_tool_in_a_bazaar_extension_the_sdk_reads(paid):
    async with paid.client() as client:
        result = await client.call_tool(TOOL, LLM_CALL)
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    required = PaymentRequired.model_validate(result.structured_content)
    assert required.extensions is not None
    extension = parse_discovery_extension(required.extensions["bazaar"])
    assert isinstance(extension, McpDiscoveryExtension)
    assert validate_discovery_extension(extension).valid
    call = extension.info.input
    assert (call.tool_name, call.transport) == (TOOL, "streamable-http")
    assert call.input_schema == tools[TOOL].input_schema
    assert call.example == {"prompt": "Hello, world"}
    echoed = PaymentPayload(
        x402_version=2,
        payload={},
        accepted=required.accepts[0],
        resource=required.resource,
        extensions=required.extensions,
    )
    found = extract_discovery_info(echoed, required.accepts[0])
    assert found is not None
    assert (found.resource_url, found.tool_name) == (f"mcp://tool/{TOOL}", TOOL)


async def test_a_paid_retry_runs_the_job_once_and_the_same_payment_cannot_pay_again(paid, chain):
    accepted = await requirements(paid)
    price = int(accepted["amount"])
    payer = chain.new_payer(price * 3)
    document = payment(chain, payer, accepted)
    before = chain.balance(chain.recipient)
    transfers = chain.transfer_count(chain.recipient)

    async with paid.client() as client:
        result = await client.call_tool(TOOL, LLM_CALL, meta={PAYMENT: document})

    assert not result.is_error, texts(result)
    job = result.structured_content
    assert job["status"] == "completed"
    assert job["output"]["text"] == "Hello, world!"
    receipt = result.meta[PAYMENT_RESPONSE]
    assert receipt["success"] is True
    assert receipt["network"] == f"eip155:{chain.chain_id}"
    assert receipt["payer"] == payer.address.lower()
    assert receipt["amount"] == str(price)
    assert chain.w3.eth.get_transaction_receipt(receipt["transaction"])["status"] == 1
    assert chain.balance(chain.recipient) == before + price
    assert chain.balance(payer.address) == price * 2
    assert chain.transfer_count(chain.recipient) == transfers + 1
    assert await paid.all_jobs() == 1

    async with paid.client() as client:
        again = await client.call_tool(TOOL, LLM_CALL, meta={PAYMENT: document})

    assert_asks_for_payment(again, accepted, NONCE_ALREADY_USED)
    assert chain.balance(chain.recipient) == before + price
    assert chain.balance(payer.address) == price * 2
    assert chain.transfer_count(chain.recipient) == transfers + 1
    assert await paid.all_jobs() == 1


async def test_a_metered_upto_payment_settles_what_the_call_used_in_its_receipt(paid, chain):
    from x402.mechanisms.evm.signers import EthAccountSigner
    from x402.mechanisms.evm.upto.client import UptoEvmScheme
    from x402.schemas import PaymentRequirements

    async with paid.client() as client:
        asked = await client.call_tool(TOOL, LLM_CALL)
    upto = next(a for a in asked.structured_content["accepts"] if a["scheme"] == "upto")
    payer = chain.new_payer(1_000_000, eth=True)
    chain.approve_permit2(payer)
    scheme = UptoEvmScheme(EthAccountSigner(payer))
    document = {
        "x402Version": 2,
        "resource": {"url": f"mcp://tool/{TOOL}"},
        "accepted": upto,
        "payload": scheme.create_payment_payload(PaymentRequirements.model_validate(upto)),
    }

    async with paid.client() as client:
        result = await client.call_tool(TOOL, LLM_CALL, meta={PAYMENT: document})

    assert not result.is_error, texts(result)
    cost = round(result.structured_content["cost_usd"] * 1_000_000)
    assert 0 < cost <= int(upto["amount"])
    receipt = result.meta[PAYMENT_RESPONSE]
    assert receipt["success"] is True and receipt["amount"] == str(cost)
    assert chain.balance(payer.address) == 1_000_000 - cost


async def test_a_payment_for_the_wrong_amount_is_refused_and_charges_nothing(paid, chain):
    accepted = await requirements(paid)
    price = int(accepted["amount"])
    payer = chain.new_payer(price * 2)
    before = chain.balance(chain.recipient)

    async with paid.client() as client:
        result = await client.call_tool(
            TOOL, LLM_CALL, meta={PAYMENT: payment(chain, payer, accepted, amount=price - 1)}
        )

    assert_asks_for_payment(result, accepted, VALUE_MISMATCH)
    assert chain.balance(chain.recipient) == before
    assert chain.balance(payer.address) == price * 2
    assert await paid.all_jobs() == 0


async def test_a_payment_signed_by_someone_else_is_refused(paid, chain):
    accepted = await requirements(paid)
    payer = chain.new_payer(int(accepted["amount"]))
    document = payment(chain, payer, accepted)
    stranger = payment(chain, chain.new_payer(), accepted)
    document["payload"]["signature"] = stranger["payload"]["signature"]

    async with paid.client() as client:
        result = await client.call_tool(TOOL, LLM_CALL, meta={PAYMENT: document})

    assert_asks_for_payment(result, accepted, "invalid_exact_evm_payload_signature")
    assert chain.balance(payer.address) == int(accepted["amount"])
    assert await paid.all_jobs() == 0


@pytest.mark.parametrize("sent", [{"x402Version": 2}, "not an object"])
async def test_what_is_not_a_payment_payload_gets_the_requirements_again(paid, sent):
    accepted = await requirements(paid)
    async with paid.client() as client:
        result = await client.call_tool(TOOL, LLM_CALL, meta={PAYMENT: sent})

    assert_asks_for_payment(result, accepted, "invalid_payload")
    assert "invalid x402 payment" in texts(result)[1]
    assert await paid.all_jobs() == 0


async def test_an_api_key_pays_even_when_a_payment_comes_along(paid, chain):
    accepted = await requirements(paid)
    payer = chain.new_payer(int(accepted["amount"]))
    key = await paid.funded_key()
    async with paid.client(key) as client:
        result = await client.call_tool(
            TOOL, LLM_CALL, meta={PAYMENT: payment(chain, payer, accepted)}
        )

    assert not result.is_error, texts(result)
    assert PAYMENT_RESPONSE not in (result.meta or {})
    assert chain.balance(payer.address) == int(accepted["amount"])
    assert await paid.job_count(key) == 1
