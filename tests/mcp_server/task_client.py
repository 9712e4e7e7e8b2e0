"""The client side of MCP tasks (the ``io.modelcontextprotocol/tasks`` extension) for the tests.

The SDK's client carries extensions (``ClientExtension``: a capability declared on each request,
a claimed ``resultType``, bound notifications) but has no tasks client of its own: this one
declares the extension, claims ``resultType: "task"`` tool results, sends ``tasks/*`` requests,
and collects ``notifications/tasks`` from a ``subscriptions/listen`` stream. Its wire models
are written from the extension's text, independently of the server's.
"""

from __future__ import annotations

from typing import Any, Literal

import anyio
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, NotificationBinding, ResultClaim
from mcp_types import (
    CallToolResult,
    NotificationParams,
    Request,
    RequestParams,
    Result,
    SubscriptionFilter,
    SubscriptionsListenRequest,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
)
from pydantic import ConfigDict

TASKS = "io.modelcontextprotocol/tasks"
TERMINAL = ("completed", "failed", "cancelled")


class CreatedTask(Result):
    model_config = ConfigDict(extra="allow")

    result_type: Literal["task"]
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None


class TaskState(Result):
    """A ``tasks/get`` result."""

    model_config = ConfigDict(extra="allow")

    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def tool_result(self) -> CallToolResult:
        assert self.result is not None, f"task {self.task_id} is {self.status}: no result"
        return CallToolResult.model_validate(self.result)


class TaskNotice(NotificationParams):
    """The params of a ``notifications/tasks``."""

    model_config = ConfigDict(extra="allow")

    task_id: str
    status: str
    status_message: str | None = None
    ttl_ms: int | None
    result: dict[str, Any] | None = None


class Acknowledged(Result):
    """An empty result (``tasks/cancel``, ``tasks/update``)."""

    model_config = ConfigDict(extra="allow")

    result_type: str


class TaskIdParams(RequestParams):
    task_id: str


class UpdateParams(TaskIdParams):
    input_responses: dict[str, Any]


class GetTask(Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"


class CancelTask(Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


class UpdateTask(Request[UpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    name_param = "taskId"


class Tasks(ClientExtension):
    """Declares the extension; ``Client.call_tool`` then finishes a task by polling it, and
    ``notifications/tasks`` are kept in ``notices``."""

    identifier = TASKS

    def __init__(self) -> None:
        self.notices: list[TaskNotice] = []
        self.ended: dict[str, anyio.Event] = {}

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self._finish)]

    def notifications(self) -> list[NotificationBinding[Any]]:
        return [
            NotificationBinding(
                method="notifications/tasks", params_type=TaskNotice, handler=self._notice
            )
        ]

    async def _finish(self, created: CreatedTask, ctx: ClaimContext) -> CallToolResult:
        while True:
            state = await ctx.session.send_request(
                GetTask(params=TaskIdParams(task_id=created.task_id)), TaskState
            )
            if state.status in TERMINAL:
                return state.tool_result()
            await anyio.sleep(0.05)

    async def _notice(self, notice: TaskNotice) -> None:
        self.notices.append(notice)
        if notice.status in TERMINAL:
            self.ending(notice.task_id).set()

    def ending(self, task_id: str) -> anyio.Event:
        return self.ended.setdefault(task_id, anyio.Event())


async def start_task(client: Client, tool: str, arguments: dict[str, Any]) -> CreatedTask:
    """Call ``tool`` and return the task it answered with (failing on any other answer)."""
    result = await client.session.call_tool(tool, arguments, allow_claimed=True)
    assert isinstance(result, CreatedTask), f"expected a task, got {result!r}"
    return result


async def get_task(client: Client, task_id: str) -> TaskState:
    return await client.session.send_request(
        GetTask(params=TaskIdParams(task_id=task_id)), TaskState
    )


async def cancel_task(client: Client, task_id: str) -> Acknowledged:
    request = CancelTask(params=TaskIdParams(task_id=task_id))
    return await client.session.send_request(request, Acknowledged)


async def update_task(client: Client, task_id: str) -> Acknowledged:
    params = UpdateParams(task_id=task_id, input_responses={})
    return await client.session.send_request(UpdateTask(params=params), Acknowledged)


async def poll_task(client: Client, task_id: str) -> TaskState:
    """``tasks/get`` until the task ends (callers bound the wait)."""
    while (state := await get_task(client, task_id)).status not in TERMINAL:
        await anyio.sleep(0.05)
    return state


async def listen_for_tasks(client: Client, task_ids: list[str]) -> SubscriptionsListenResult:
    """A ``subscriptions/listen`` for ``task_ids``, until the server ends the stream."""
    request = SubscriptionsListenRequest(
        params=SubscriptionsListenRequestParams(
            notifications=SubscriptionFilter.model_validate({"taskIds": task_ids})
        )
    )
    return await client.session.send_request(request, SubscriptionsListenResult)
