"""Task status notifications on a subscriptions/listen stream, over streamable HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolResult,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    TextContent,
)

from tests.mcp_server.conftest import (
    LLM_CALL,
    StartGateway,
    async_llm,
    http_client,
    serve_http,
)
from tests.mcp_server.task_client import Tasks, get_task, listen_for_tasks, start_task


class Acks:
    """Records the acknowledged filters of listen streams (a client message handler)."""

    def __init__(self) -> None:
        self.honored: list[SubscriptionFilter] = []

    async def __call__(self, message: Any) -> None:
        if isinstance(message, SubscriptionsAcknowledgedNotification):
            self.honored.append(message.params.notifications)


async def test_a_followed_task_reports_each_status_then_its_result_and_the_stream_ends(
    start_gateway: StartGateway, upstream
):
    upstream.behaviour.delay_s = 1.0
    tasks, acks = Tasks(), Acks()
    async with start_gateway(edit=async_llm) as running, serve_http(running.app) as url:
        key = await running.funded_key()
        async with http_client(url, key, extensions=[tasks], message_handler=acks) as client:
            with anyio.fail_after(30):
                created = await start_task(client, "llm-4090", LLM_CALL)
                unknown = str(uuid.uuid4())
                await listen_for_tasks(client, [created.task_id, unknown])
                await tasks.ending(created.task_id).wait()
                polled = await get_task(client, created.task_id)
    assert [honored.model_extra for honored in acks.honored] == [{"taskIds": [created.task_id]}]
    statuses = [notice.status for notice in tasks.notices]
    assert statuses[0] == "working" and statuses[-1] == "completed"
    assert set(statuses) == {"working", "completed"}
    last = tasks.notices[-1]
    assert last.task_id == created.task_id and last.ttl_ms == polled.ttl_ms
    # The last notification is the task as tasks/get gives it, with the tool result.
    assert last.result == polled.result
    result = CallToolResult.model_validate(last.result)
    assert isinstance(result.content[0], TextContent)
    assert result.content[0].text == "Hello, world!"


async def test_another_accounts_task_is_not_followed(start_gateway: StartGateway, upstream):
    upstream.behaviour.delay_s = 0.5
    acks = Acks()
    theirs = Tasks()
    async with start_gateway(edit=async_llm) as running, serve_http(running.app) as url:
        owner_key = await running.funded_key("owner@example.com")
        other_key = await running.funded_key("other@example.com")
        async with (
            http_client(url, owner_key, extensions=[Tasks()]) as owner,
            http_client(url, other_key, extensions=[theirs], message_handler=acks) as other,
        ):
            with anyio.fail_after(30):
                created = await start_task(owner, "llm-4090", LLM_CALL)
                await listen_for_tasks(other, [created.task_id])
    assert [honored.model_extra for honored in acks.honored] == [{"taskIds": []}]
    assert theirs.notices == []


async def test_following_tasks_needs_the_extension_declared(start_gateway: StartGateway):
    async with start_gateway() as running, serve_http(running.app) as url:
        key = await running.funded_key()
        async with http_client(url, key) as client:
            with anyio.fail_after(30), pytest.raises(MCPError) as refused:
                await listen_for_tasks(client, [str(uuid.uuid4())])
    assert refused.value.code == MISSING_REQUIRED_CLIENT_CAPABILITY
