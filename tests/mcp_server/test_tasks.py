"""MCP tasks over streamable HTTP: a long call answers with a task that tasks/get finishes,
tasks/cancel refunds, only its account sees, and that any app on the same database serves."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolResult,
    ResourceLink,
    TextContent,
)

from tests.mcp_server.conftest import (
    FUNDS_MICROS,
    LLM_CALL,
    StartGateway,
    async_llm,
    catalog_edit,
    http_client,
    serve_http,
)
from tests.mcp_server.media_engine import MEDIA_SERVICE
from tests.mcp_server.task_client import (
    TASKS,
    Tasks,
    cancel_task,
    get_task,
    poll_task,
    start_task,
    update_task,
)
from tests.support.gateway_app import (
    auth,
    register,
    running_app,
    settings_for,
    write_catalog,
)


def text_of(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent), block
    return block.text


async def test_a_task_capable_client_gets_a_task_at_once_and_polls_it_to_the_result(
    start_gateway: StartGateway, upstream
):
    upstream.behaviour.delay_s = 1.5
    async with start_gateway(edit=async_llm) as running, serve_http(running.app) as url:
        key = await running.funded_key()
        async with http_client(url, key, extensions=[Tasks()]) as client:
            assert TASKS in (client.server_capabilities.extensions or {})
            with anyio.fail_after(30):
                created = await start_task(client, "llm-4090", LLM_CALL)
                done = await poll_task(client, created.task_id)
        # The call came back while the job was still running, not when it ended.
        assert created.status == "working"
        assert created.ttl_ms is None and created.poll_interval_ms == 500
        assert done.status == "completed" and done.status_message.startswith("completed in")
        result = done.tool_result()
        assert not result.is_error and text_of(result) == "Hello, world!"
        job = result.structured_content
        assert job is not None and job["job_id"] == created.task_id
        assert job["status_url"] == f"{url}/status/{created.task_id}"
        lived = datetime.fromisoformat(job["completed_at"]) - datetime.fromisoformat(
            job["created_at"]
        )
        assert done.ttl_ms == round((lived + timedelta(hours=24)).total_seconds() * 1000)
        spent = round(job["cost_usd"] * 1_000_000)
        assert spent > 0
        assert await running.balance_micros(key) == FUNDS_MICROS - spent


async def test_call_tool_of_a_task_capable_client_finishes_the_task_by_polling(
    start_gateway: StartGateway, upstream
):
    upstream.behaviour.delay_s = 0.5
    async with start_gateway(edit=async_llm) as running, serve_http(running.app) as url:
        key = await running.funded_key()
        async with http_client(url, key, extensions=[Tasks()]) as client:
            with anyio.fail_after(30):
                result = await client.call_tool("llm-4090", LLM_CALL)
        assert text_of(result) == "Hello, world!"
        assert result.structured_content is not None
        assert result.structured_content["status"] == "completed"


async def test_cancelling_a_task_cancels_its_job_and_refunds_it_exactly(
    start_gateway: StartGateway, upstream
):
    upstream.behaviour.delay_s = 3.0
    async with start_gateway(edit=async_llm) as running, serve_http(running.app) as url:
        key = await running.funded_key()
        async with http_client(url, key, extensions=[Tasks()]) as client:
            with anyio.fail_after(30):
                created = await start_task(client, "llm-4090", LLM_CALL)
                held = await running.balance_micros(key)
                acknowledged = await cancel_task(client, created.task_id)
                cancelled = await get_task(client, created.task_id)
                again = await cancel_task(client, created.task_id)
        assert held < FUNDS_MICROS
        for ack in (acknowledged, again):
            assert ack.result_type == "complete" and not ack.model_extra
        assert cancelled.status == "cancelled" and cancelled.result is None
        assert "refunded $0.003" in (cancelled.status_message or "")
        assert await running.balance_micros(key) == FUNDS_MICROS
        job = await running.gateway.get(created.task_id)
        assert job.status.value == "cancelled"


async def test_a_failed_job_is_a_completed_task_whose_result_is_an_error_and_refunded(
    start_gateway: StartGateway, upstream
):
    upstream.behaviour.fail_status = 500
    async with start_gateway(edit=async_llm) as running, serve_http(running.app) as url:
        key = await running.funded_key()
        async with http_client(url, key, extensions=[Tasks()]) as client:
            with anyio.fail_after(30):
                created = await start_task(client, "llm-4090", LLM_CALL)
                done = await poll_task(client, created.task_id)
        # "failed" is for JSON-RPC errors; a tool result with isError completes the task.
        assert done.status == "completed"
        assert (done.status_message or "").startswith("failed:")
        result = done.tool_result()
        assert result.is_error and result.structured_content is not None
        assert result.structured_content["error"]["code"] == "backend_error"
        assert await running.balance_micros(key) == FUNDS_MICROS


async def test_a_task_result_gives_large_media_as_resource_links(start_gateway: StartGateway):
    def async_media(data: dict[str, Any]) -> None:
        data["services"][MEDIA_SERVICE]["mode"] = "async"

    async with (
        start_gateway(edit=async_media, mcp_inline_media_bytes=64) as running,
        serve_http(running.app) as url,
    ):
        key = await running.funded_key()
        async with http_client(url, key, extensions=[Tasks()]) as client:
            with anyio.fail_after(30):
                created = await start_task(client, MEDIA_SERVICE, {"size_bytes": 4096})
                done = await poll_task(client, created.task_id)
        result = done.tool_result()
        links = [block for block in result.content if isinstance(block, ResourceLink)]
        assert [str(link.uri) for link in links] == [f"{url}/status/{created.task_id}"]
        assert result.structured_content is not None
        assert result.structured_content["media"][0]["delivery"] == "link"


async def test_a_sync_service_answers_inline_within_the_wait_and_with_a_task_past_it(
    start_gateway: StartGateway, upstream
):
    def quick_llm(data: dict[str, Any]) -> None:
        data["services"]["llm-4090"]["estimated_seconds"] = 0.1

    async with (
        start_gateway(edit=quick_llm, mcp_wait_s=1.0) as running,
        serve_http(running.app) as url,
    ):
        key = await running.funded_key()
        async with http_client(url, key, extensions=[Tasks()]) as client:
            with anyio.fail_after(30):
                quick = await client.session.call_tool("llm-4090", LLM_CALL, allow_claimed=True)
                upstream.behaviour.delay_s = 2.5
                slow = await start_task(client, "llm-4090", LLM_CALL)
                done = await poll_task(client, slow.task_id)
        assert isinstance(quick, CallToolResult) and text_of(quick) == "Hello, world!"
        assert slow.status == "working"
        assert text_of(done.tool_result()) == "Hello, world!"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_client_without_tasks_keeps_waiting_for_the_result(
    start_gateway: StartGateway, upstream, mode
):
    upstream.behaviour.delay_s = 0.5
    async with start_gateway(edit=async_llm) as running, serve_http(running.app) as url:
        key = await running.funded_key()
        async with http_client(url, key, mode=mode) as client:
            with anyio.fail_after(30):
                result = await client.call_tool("llm-4090", LLM_CALL)
                with pytest.raises(MCPError) as refused:
                    await get_task(client, result.structured_content["job_id"])  # type: ignore[index]
        assert text_of(result) == "Hello, world!"
        assert result.structured_content is not None
        assert result.structured_content["status"] == "completed"
        # Asking about a task without declaring the extension is refused (a 2025 client gets
        # the same answer: the SDK declares claim-bearing extensions only at 2026-07-28).
        assert refused.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
        assert refused.value.data["requiredCapabilities"]["extensions"] == {TASKS: {}}


async def test_over_the_handshake_protocol_a_task_capable_client_gets_todays_answer(
    start_gateway: StartGateway, upstream
):
    upstream.behaviour.delay_s = 1.0
    async with start_gateway(edit=async_llm, mcp_wait_s=0.2) as running:
        key = await running.funded_key()
        async with (
            serve_http(running.app) as url,
            http_client(url, key, mode="legacy", extensions=[Tasks()]) as client,
        ):
            with anyio.fail_after(30):
                result = await client.call_tool("llm-4090", LLM_CALL)
            assert client.protocol_version == "2025-11-25"
        assert result.structured_content is not None
        assert result.structured_content["status"] == "running"
        assert "get_job" in text_of(result)


async def test_another_account_can_neither_read_nor_cancel_a_task(
    start_gateway: StartGateway, upstream
):
    upstream.behaviour.delay_s = 2.0
    async with start_gateway(edit=async_llm) as running, serve_http(running.app) as url:
        owner_key = await running.funded_key("owner@example.com")
        other_key = await running.funded_key("other@example.com")
        async with (
            http_client(url, owner_key, extensions=[Tasks()]) as owner,
            http_client(url, other_key, extensions=[Tasks()]) as other,
            http_client(url, None, extensions=[Tasks()]) as anonymous,
            http_client(url, "gpub_not-a-key", extensions=[Tasks()]) as forged,
        ):
            with anyio.fail_after(30):
                created = await start_task(owner, "llm-4090", LLM_CALL)
                refusals = []
                for attempt in (get_task, cancel_task, update_task):
                    with pytest.raises(MCPError) as refused:
                        await attempt(other, created.task_id)
                    refusals.append(refused.value)
                with pytest.raises(MCPError) as unknown:
                    await get_task(owner, str(uuid.uuid4()))
                with pytest.raises(MCPError) as keyless:
                    await get_task(anonymous, created.task_id)
                with pytest.raises(MCPError) as bad_key:
                    await cancel_task(forged, created.task_id)
                still = await get_task(owner, created.task_id)
                await update_task(owner, created.task_id)
                done = await poll_task(owner, created.task_id)
        for refusal in [*refusals, unknown.value]:
            assert refusal.code == INVALID_PARAMS
            assert refusal.message == "Failed to retrieve task: Task not found"
        assert keyless.value.code == bad_key.value.code == INVALID_REQUEST
        assert keyless.value.data["code"] == "missing_api_key"
        assert bad_key.value.data["code"] == "invalid_api_key"
        assert still.status == "working" and done.status == "completed"
        assert await running.balance_micros(other_key) == FUNDS_MICROS
        assert await running.balance_micros(owner_key) < FUNDS_MICROS


async def test_a_task_is_answered_by_the_app_restarted_on_the_same_database(
    start_gateway: StartGateway, upstream
):
    upstream.behaviour.delay_s = 0.5
    async with start_gateway(edit=async_llm) as first, serve_http(first.app) as url:
        key = await first.funded_key()
        async with http_client(url, key, extensions=[Tasks()]) as client:
            with anyio.fail_after(30):
                created = await start_task(client, "llm-4090", LLM_CALL)
                before = await poll_task(client, created.task_id)
    async with (
        start_gateway(edit=async_llm) as second,
        serve_http(second.app) as url,
        http_client(url, key, extensions=[Tasks()]) as client,
    ):
        with anyio.fail_after(30):
            after = await get_task(client, created.task_id)
            await cancel_task(client, created.task_id)
            still = await get_task(client, created.task_id)
    assert after.status == still.status == "completed"
    assert after.created_at == before.created_at and after.ttl_ms == before.ttl_ms
    assert text_of(after.tool_result()) == "Hello, world!"
    assert after.tool_result().structured_content == {
        **before.tool_result().structured_content,  # type: ignore[dict-item]
        "status_url": f"{url}/status/{created.task_id}",
    }


@pytest.mark.postgres
async def test_a_second_app_on_the_same_postgres_follows_and_cancels_a_task(
    postgres_url: str, tmp_path: Path, upstream
):
    from gpubridge.db import Database
    from gpubridge.payments.ledger_check import check_ledger

    db = Database(postgres_url)
    await db.drop_all()
    await db.create_all()

    def edit(data: dict[str, Any]) -> None:
        catalog_edit(upstream.base_url, media=False)(data)
        async_llm(data)

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    upstream.behaviour.delay_s = 1.0
    async with (
        running_app(settings_for(postgres_url, tmp_path / "a", catalog)) as (app_a, http_a),
        running_app(settings_for(postgres_url, tmp_path / "b", catalog)) as (app_b, _),
        serve_http(app_a) as url_a,
        serve_http(app_b) as url_b,
    ):
        key = await register(http_a, "agent@example.com")
        await app_a.state.gateway.grant("agent@example.com", FUNDS_MICROS)
        async with (
            http_client(url_a, key, extensions=[Tasks()]) as on_a,
            http_client(url_b, key, extensions=[Tasks()]) as on_b,
        ):
            with anyio.fail_after(30):
                created = await start_task(on_a, "llm-4090", LLM_CALL)
                done = await poll_task(on_b, created.task_id)
                upstream.behaviour.delay_s = 3.0
                second = await start_task(on_a, "llm-4090", LLM_CALL)
                await cancel_task(on_b, second.task_id)
                cancelled = await get_task(on_a, second.task_id)
        assert text_of(done.tool_result()) == "Hello, world!"
        assert cancelled.status == "cancelled"
        job = done.tool_result().structured_content
        assert job is not None
        balance = (await http_a.get("/account/balance", headers=auth(key))).json()
        assert round(balance["balance"] * 1_000_000) == FUNDS_MICROS - round(
            job["cost_usd"] * 1_000_000
        )
    async with db.connect() as conn:
        report = await check_ledger(conn)
    await db.dispose()
    assert report.ok, report.summary()
