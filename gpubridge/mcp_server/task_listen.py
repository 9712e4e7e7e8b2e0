"""``notifications/tasks``: task status pushed on a ``subscriptions/listen`` stream.

A client that declared the tasks extension names the tasks to follow in its listen request's
``notifications.taskIds``; the acknowledgment lists those it will hear about (its own tasks
only), then each change of a followed task's status or status message arrives as a
``notifications/tasks`` holding the task as ``tasks/get`` answers it (the last one with the
tool result). The stream ends gracefully, with the listen result, once every followed task has
ended, unless the client also asked for list-change or resource notifications: those are
honoured and never sent (this server's tools, prompts and resources do not change while it
runs), so such a stream stays open until the client leaves.

Status comes from the job's events here, and from the job store for a job another replica runs
(``Gateway.stream``), so a task is followed from any replica sharing the database.
"""

from __future__ import annotations

import time
from typing import Any, cast

import anyio
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
)

from gpubridge.errors import GpubridgeError
from gpubridge.jobs.store import JobRecord
from gpubridge.mcp_server.caller import Caller
from gpubridge.mcp_server.tasks import (
    TASKS_EXTENSION,
    CallerOf,
    TaskNotification,
    TaskNotificationParams,
    TaskViews,
    owned_job,
    protocol_error,
)

TASK_IDS = "taskIds"
RELOAD_EVERY_S = 0.5
"""A job is re-read on its progress events at most this often (status changes always)."""


class TaskListen:
    """The ``subscriptions/listen`` handler: task notifications for the caller's tasks."""

    def __init__(self, views: TaskViews, caller_of: CallerOf) -> None:
        self.views = views
        self.gateway = views.gateway
        self.caller_of = caller_of

    async def __call__(
        self, ctx: ServerRequestContext[Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(INVALID_REQUEST, "subscriptions/listen requires a request id")
        requested = params.notifications
        task_ids = _task_ids(requested)
        if task_ids:
            require_client_extension(ctx, TASKS_EXTENSION)
        try:
            caller = self.caller_of(ctx)
        except GpubridgeError as exc:
            raise protocol_error(exc) from exc
        followed = [job for task_id in task_ids if (job := await self._own(caller, task_id))]
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        honored = _honored(requested, [job.id for job in followed] if task_ids else None)
        await ctx.session.send_notification(
            SubscriptionsAcknowledgedNotification(
                params=SubscriptionsAcknowledgedNotificationParams(
                    notifications=honored, _meta=meta
                )
            ),
            related_request_id=subscription_id,
        )
        async with anyio.create_task_group() as group:
            for job in followed:
                group.start_soon(self._follow, ctx, caller, job, meta)
        if _other_than_tasks(honored):
            await anyio.sleep_forever()
        return SubscriptionsListenResult(_meta=meta)

    async def _own(self, caller: Caller, task_id: str) -> JobRecord | None:
        """The caller's job of ``task_id``; None (not honoured) for anything else."""
        try:
            _, job = await owned_job(self.gateway, caller, task_id)
        except GpubridgeError:
            return None
        return job

    async def _follow(
        self, ctx: ServerRequestContext[Any], caller: Caller, job: JobRecord, meta: dict[str, Any]
    ) -> None:
        """Notify each change of the task until its job ends."""
        said: tuple[str, str | None] | None = None

        async def say(current: JobRecord) -> None:
            nonlocal said
            task = self.views.detailed(current, caller)
            if (task["status"], task["status_message"]) == said:
                return
            said = (task["status"], task["status_message"])
            notification = TaskNotification(params=TaskNotificationParams(**task, _meta=meta))
            # The SDK types this parameter as its core notifications; it sends any model.
            await ctx.session.send_notification(
                cast(Any, notification), related_request_id=ctx.request_id
            )

        await say(job)
        read_at = time.monotonic()
        try:
            async for item in self.gateway.stream(job.id):
                if item["event"] not in ("status", "progress"):
                    continue
                if item["event"] == "progress" and time.monotonic() - read_at < RELOAD_EVERY_S:
                    continue
                job, read_at = await self.gateway.get(job.id), time.monotonic()
                await say(job)
                if job.status.is_terminal:
                    return
            if not job.status.is_terminal:
                await say(await self.gateway.get(job.id))
        except GpubridgeError:
            return  # its results expired meanwhile: nothing more to say


def _task_ids(requested: SubscriptionFilter) -> list[str]:
    value = (requested.model_extra or {}).get(TASK_IDS)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MCPError(INVALID_PARAMS, "notifications.taskIds must be a list of task ids")
    return list(dict.fromkeys(value))


def _honored(requested: SubscriptionFilter, task_ids: list[str] | None) -> SubscriptionFilter:
    """The acknowledged filter: what was asked, with only the caller's own tasks."""
    wire: dict[str, Any] = {
        "toolsListChanged": True if requested.tools_list_changed else None,
        "promptsListChanged": True if requested.prompts_list_changed else None,
        "resourcesListChanged": True if requested.resources_list_changed else None,
        "resourceSubscriptions": list(requested.resource_subscriptions or []) or None,
        TASK_IDS: task_ids,
    }
    return SubscriptionFilter.model_validate({k: v for k, v in wire.items() if v is not None})


def _other_than_tasks(honored: SubscriptionFilter) -> bool:
    return bool(
        honored.tools_list_changed
        or honored.prompts_list_changed
        or honored.resources_list_changed
        or honored.resource_subscriptions
    )
