"""Tool calls through the in-memory client: payment, validation, errors and the helper tools."""

from __future__ import annotations

import json
import os
from typing import Any

from mcp_types import TextContent

from gpubridge.jobs import store
from gpubridge.payments.x402 import paid_requests
from gpubridge.payments.x402 import store as x402_store
from tests.mcp_server.conftest import FUNDS_MICROS, LLM_CALL, StartGateway
from tests.support.gateway_app import UNSET


def texts(result) -> list[str]:
    return [block.text for block in result.content if isinstance(block, TextContent)]


async def test_a_paid_call_returns_the_answer_and_deducts_exactly_the_job_cost(running):
    key = await running.funded_key()
    async with running.client(key) as client:
        result = await client.call_tool("llm-4090", LLM_CALL)

    assert not result.is_error, texts(result)
    assert texts(result)[0] == "Hello, world!"
    job = result.structured_content
    assert job["status"] == "completed"
    assert job["output"]["text"] == "Hello, world!"
    assert json.loads(texts(result)[-1]) == job
    async with running.gateway.db.connect() as conn:
        record = await store.get_job(conn, job["job_id"])
    assert record is not None and record.cost_micros is not None and record.cost_micros > 0
    assert await running.balance_micros(key) == FUNDS_MICROS - record.cost_micros


async def test_embeddings_come_back_as_structured_output(running):
    key = await running.funded_key()
    async with running.client(key) as client:
        result = await client.call_tool("embedding-l4", {"text": ["a cat", "a dog"]})
    assert not result.is_error, texts(result)
    output = result.structured_content["output"]
    assert output["dimensions"] == 8 and len(output["embeddings"]) == 2


async def test_bad_arguments_list_every_violation_and_charge_nothing(running):
    key = await running.funded_key()
    async with running.client(key) as client:
        result = await client.call_tool(
            "llm-4090", {"prompt": 5, "max_tokens": "many", "colour": "red"}
        )
    assert result.is_error
    error = result.structured_content["error"]
    assert error["code"] == "invalid_input"
    paths = {v["path"] for v in error["violations"]}
    assert {"prompt", "max_tokens"} <= paths
    assert any("colour" in v["message"] for v in error["violations"])
    assert "prompt" in texts(result)[0] and "max_tokens" in texts(result)[0]
    assert await running.balance_micros(key) == FUNDS_MICROS
    assert await running.job_count(key) == 0


async def test_an_unpaid_call_gets_the_x402_payment_required_object(running):
    async with running.client() as client:
        result = await client.call_tool("llm-4090", LLM_CALL)
    assert result.is_error
    required = result.structured_content
    assert required["x402Version"] == 2
    assert required["resource"]["url"] == "mcp://tool/llm-4090"
    assert required["accepts"][0]["amount"] == "3000"
    assert json.loads(texts(result)[0]) == required
    assert "API key" in texts(result)[1]
    assert await running.all_jobs() == 0


async def test_with_x402_off_an_unpaid_call_is_payment_required_asking_for_a_key(
    start_gateway: StartGateway,
):
    async with start_gateway(x402_enabled=False) as running, running.client() as client:
        result = await client.call_tool("llm-4090", LLM_CALL)
        paying = await client.call_tool(
            "llm-4090", LLM_CALL, meta={"x402/payment": {"x402Version": 2}}
        )
    assert result.is_error
    error = result.structured_content["error"]
    assert error["code"] == "payment_required"
    assert "API key" in error["message"] and error["estimated_cost_usd"] == 0.003
    assert "x402 payments are off" in paying.structured_content["error"]["message"]


async def test_without_a_recipient_x402_is_not_offered_and_a_keyless_call_asks_for_a_key(
    start_gateway: StartGateway,
):
    async with start_gateway(x402_pay_to=UNSET) as running, running.client() as client:
        instructions = client.instructions or ""
        read = await client.read_resource("gpubridge://catalog")
        result = await client.call_tool("llm-4090", LLM_CALL)
        paying = await client.call_tool(
            "llm-4090", LLM_CALL, meta={"x402/payment": {"x402Version": 2}}
        )
        assert await running.all_jobs() == 0
    assert "x402 payments are not offered on this server" in instructions
    payments = json.loads(read.contents[0].text)["payments"]  # type: ignore[union-attr]
    assert payments["x402"] == {"offered": False}
    for answer in (result, paying):
        assert answer.is_error
        # No PaymentRequired object: there is no wallet to pay.
        assert "x402Version" not in answer.structured_content
        assert "accepts" not in answer.structured_content
        error = answer.structured_content["error"]
        assert error["code"] == "payment_required"
        assert "/account/register" in error["message"] and "API key" in error["message"]
        assert "x402 payments are off on this server" in error["message"]
        assert not any(text.lstrip().startswith("{") for text in texts(answer))


async def test_with_a_recipient_the_instructions_and_catalog_offer_x402(running):
    async with running.client() as client:
        instructions = client.instructions or ""
        read = await client.read_resource("gpubridge://catalog")
    assert 'the paid retry carries the payment in _meta["x402/payment"]' in instructions
    payments = json.loads(read.contents[0].text)["payments"]  # type: ignore[union-attr]
    assert payments["x402"]["offered"] is True


async def test_an_invalid_key_is_refused_without_a_job(running):
    async with running.client("gpub_not-a-key") as client:
        result = await client.call_tool("llm-4090", LLM_CALL)
    assert result.is_error
    assert result.structured_content["error"]["code"] == "invalid_api_key"


async def test_an_unknown_tool_is_an_error_result(running):
    async with running.client() as client:
        result = await client.call_tool("no-such-service", {})
    assert result.is_error
    assert result.structured_content["error"]["code"] == "unknown_tool"
    assert "suggestion" not in result.structured_content["error"]


async def test_a_mistyped_tool_offers_the_tool_meant(running):
    async with running.client() as client:
        result = await client.call_tool("llm-409", LLM_CALL)
    assert result.is_error
    error = result.structured_content["error"]
    assert error["code"] == "unknown_tool" and error["suggestion"] == "llm-4090"
    assert "did you mean `llm-4090`?" in texts(result)[0]


async def test_a_mistyped_argument_names_the_argument_meant_and_charges_nothing(running):
    key = await running.funded_key()
    async with running.client(key) as client:
        result = await client.call_tool("llm-4090", {"promt": "Hello"})
    assert result.is_error
    error = result.structured_content["error"]
    assert error["code"] == "invalid_input"
    assert "did you mean `prompt`?" in texts(result)[0]
    assert "send `prompt` or `messages`" in texts(result)[0]
    assert any(v.get("suggestion") == "prompt" for v in error["violations"])
    assert await running.balance_micros(key) == FUNDS_MICROS


async def test_a_service_without_a_backend_is_unavailable_and_charges_nothing(start_gateway):
    def no_backend(data: dict[str, Any]) -> None:
        data["services"]["caption"]["backends"] = []

    async with start_gateway(edit=no_backend) as running:
        key = await running.funded_key()
        async with running.client(key) as client:
            result = await client.call_tool("caption", {"image_url": "https://example.com/a.png"})
        assert result.is_error, texts(result)
        assert result.structured_content["error"]["code"] == "service_unavailable"
        assert await running.balance_micros(key) == FUNDS_MICROS


async def test_estimate_cost_prices_a_call_like_the_catalog(running):
    async with running.client() as client:
        result = await client.call_tool(
            "estimate_cost", {"service": "llm-4090", "input": {"prompt": "hi", "max_tokens": 10}}
        )
        per_second = await client.call_tool(
            "estimate_cost", {"service": "embedding-l4", "seconds": 10}
        )
        bad = await client.call_tool("estimate_cost", {"service": "nope", "extra": 1})
    assert not result.is_error
    expected = running.gateway.estimate("llm-4090", payload={"prompt": "hi", "max_tokens": 10})
    assert result.structured_content == expected
    assert per_second.structured_content["estimated_cost_usd"] == 0.01
    assert bad.is_error
    assert len(bad.structured_content["error"]["violations"]) == 2


async def test_get_job_returns_a_finished_job_and_unknown_ids_are_errors(running):
    key = await running.funded_key()
    async with running.client(key) as client:
        ran = await client.call_tool("llm-4090", LLM_CALL)
        job_id = ran.structured_content["job_id"]
        got = await client.call_tool("get_job", {"job_id": job_id})
        missing = await client.call_tool("get_job", {"job_id": "not-a-job"})
    assert not got.is_error
    assert got.structured_content["status"] == "completed"
    assert got.structured_content["output"] == ran.structured_content["output"]
    assert missing.is_error
    assert missing.structured_content["error"]["code"] == "job_not_found"


async def test_get_job_follows_a_paid_request_whose_settlement_is_pending(running):
    db = running.gateway.db
    payer = "0x" + "12" * 20
    payment_id = await x402_store.reserve_authorization(
        db,
        network="eip155:8453",
        asset="0x" + "aa" * 20,
        payer=payer,
        nonce=os.urandom(32),
        valid_before=2**40,
        amount_micros=3_000,
    )
    kept = await paid_requests.record(
        db,
        job_id="0b6f0d0e-5b1f-4c53-9d59-3f0c5a7f0c11",
        payment_id=payment_id,
        payer=payer,
        payment_identifier=None,
        request_hash="h",
        service="llm-4090",
        input=LLM_CALL,
        version=2,
        status=paid_requests.PENDING,
    )
    key = await running.funded_key()
    async with running.client(key) as client:
        waiting = await client.call_tool("get_job", {"job_id": kept.job_id})
        assert await paid_requests.resolve(db, kept.id, paid_requests.RELEASED, "never landed")
        released = await client.call_tool("get_job", {"job_id": kept.job_id})
    assert not waiting.is_error
    assert waiting.structured_content["status"] == "pending"
    assert waiting.structured_content["progress"] == {"stage": "settlement_pending"}
    assert waiting.structured_content["status_url"].endswith(f"/status/{kept.job_id}")
    assert released.structured_content["status"] == "failed"
    assert released.structured_content["error"] == {
        "code": "released",
        "message": "never landed",
    }


async def test_cancel_job_refunds_a_running_job_and_needs_the_key(start_gateway, upstream):
    upstream.behaviour.delay_s = 1.0
    async with start_gateway(mcp_wait_s=0.2) as running:
        key = await running.funded_key()
        async with running.client(key) as client:
            started = await client.call_tool("llm-4090", LLM_CALL)
            job_id = started.structured_content["job_id"]
            assert started.structured_content["status"] == "running"
            async with running.client() as anonymous:
                refused = await anonymous.call_tool("cancel_job", {"job_id": job_id})
            cancelled = await client.call_tool("cancel_job", {"job_id": job_id})
            again = await client.call_tool("cancel_job", {"job_id": job_id})
        assert refused.is_error
        assert refused.structured_content["error"]["code"] == "missing_api_key"
        assert not cancelled.is_error
        assert cancelled.structured_content["status"] == "cancelled"
        assert again.is_error
        assert again.structured_content["error"]["code"] == "job_not_cancellable"
        assert await running.balance_micros(key) == FUNDS_MICROS


async def test_a_failed_job_is_an_error_result_and_refunded(running, upstream):
    upstream.behaviour.fail_status = 500
    key = await running.funded_key()
    async with running.client(key) as client:
        result = await client.call_tool("llm-4090", LLM_CALL)
    assert result.is_error
    job = result.structured_content
    assert job["status"] == "failed"
    assert job["error"]["code"] == "backend_error"
    assert "refunded" in texts(result)[0]
    assert await running.balance_micros(key) == FUNDS_MICROS
