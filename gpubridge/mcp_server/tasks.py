"""MCP tasks: the ``io.modelcontextprotocol/tasks`` extension (protocol 2026-07-28).

A tool call from a client that declares the extension on its request answers a long job with
a task rather than holding the call open (see ``ToolCalls.run_service``). ``tasks/get`` reports
the task (with the tool result once it completed), ``tasks/cancel`` cancels its job (refunded in
full), ``tasks/update`` is acknowledged (a job never asks for input), and ``notifications/tasks``
reports it on a ``subscriptions/listen`` stream (``task_listen``).

A task is the job its call started: the task id is the job id, and every request reads the job
store, so a task outlives the process that created it and any replica sharing the database
answers for it. Only the account that started the job (by the same credentials rules as the
tools) sees, follows or cancels its task; to anyone else it does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mcp.server import ServerRequestContext
from mcp.server.mcpserver import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    CallToolResult,
    EmptyResult,
    Notification,
    NotificationParams,
    RequestParams,
    Result,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.alias_generators import to_camel

from gpubridge.errors import Conflict, Expired, GpubridgeError, NotFound, Unauthorized
from gpubridge.gateway import Gateway
from gpubridge.jobs.status import JobStatus
from gpubridge.jobs.store import JobRecord
from gpubridge.mcp_server.caller import Caller
from gpubridge.mcp_server.progress import progress_text, status_text
from gpubridge.money import micros_to_usd
from gpubridge.payments.accounts import Account

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"

TaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]

POLL_INTERVAL_MS = (500, 5_000)
"""Bounds of the suggested polling interval: a tenth of the service's expected time."""

Render = Callable[[JobRecord, Caller], CallToolResult]
"""The tool result of a finished job, exactly as the tool call would have returned it."""
CallerOf = Callable[[ServerRequestContext[Any]], Caller]


class TaskFields(BaseModel):
    """A task on the wire (camelCase)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    task_id: str
    status: TaskStatus
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    """From creation; null while the job runs (it is kept until then), then until its results
    expire."""
    poll_interval_ms: int | None = None

    @model_serializer(mode="wrap")
    def _keep_null_ttl(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        # ttlMs is required (null for no limit yet); the SDK dumps without None fields.
        data: dict[str, Any] = handler(self)
        data.setdefault("ttlMs" if info.by_alias else "ttl_ms", self.ttl_ms)
        return data


class DetailedTask(TaskFields):
    result: dict[str, Any] | None = None
    """The tool result, once the task completed."""


class CreateTaskResult(Result, TaskFields):
    """What a tool call answers instead of its result when it makes a task."""

    result_type: Literal["task"] = "task"


class GetTaskResult(Result, DetailedTask):
    result_type: Literal["complete"] = "complete"


class TaskNotificationParams(NotificationParams, DetailedTask):
    pass


class TaskNotification(Notification[TaskNotificationParams, Literal["notifications/tasks"]]):
    method: Literal["notifications/tasks"] = "notifications/tasks"
    params: TaskNotificationParams


class TaskParams(RequestParams):
    task_id: str


class UpdateTaskParams(TaskParams):
    input_responses: dict[str, Any] = Field(default_factory=dict)


def offers_tasks(ctx: ServerRequestContext[Any]) -> bool:
    """Whether this request may be answered with a task: a 2026-07-28 request whose client
    declared the extension on it (an older client, or one without it, never gets a task)."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    declared = capabilities.extensions if capabilities is not None else None
    return bool(declared and TASKS_EXTENSION in declared)


@dataclass(frozen=True)
class TaskState:
    """A job as a task, less its result."""

    status: TaskStatus
    status_message: str
    last_updated_at: datetime
    ttl_ms: int | None

    @classmethod
    def of(cls, job: JobRecord, result_ttl_s: int) -> TaskState:
        error = job.error or {}
        refunded = f"refunded ${micros_to_usd(job.hold_micros)}"
        updated = job.completed_at or job.started_at or job.created_at
        ttl_ms = None
        if job.completed_at is not None:
            lived = job.completed_at - job.created_at
            ttl_ms = round(lived.total_seconds() * 1000) + result_ttl_s * 1000
        if job.status == JobStatus.COMPLETED:
            return cls("completed", _completed_text(job), updated, ttl_ms)
        if job.status == JobStatus.FAILED:
            # A failed job is a tool result with isError, not a JSON-RPC error: per the
            # extension such a task is "completed" (the status "failed" is for protocol errors).
            text = f"failed: {error.get('message')}; {refunded}"
            return cls("completed", text, updated, ttl_ms)
        if job.status == JobStatus.CANCELLED:
            text = f"{error.get('message', 'cancelled')}; {refunded}"
            return cls("cancelled", text, updated, ttl_ms)
        if job.status == JobStatus.RUNNING and job.progress:
            return cls("working", progress_text(job.progress), updated, ttl_ms)
        return cls("working", status_text(job.status.value, {}), updated, ttl_ms)


def _completed_text(job: JobRecord) -> str:
    if job.execution_ms is None:
        return "completed"
    return f"completed in {round(job.execution_ms / 1000, 3)} s"


class TaskViews:
    """Jobs as tasks, in the shapes the extension defines."""

    def __init__(self, gateway: Gateway, render: Render) -> None:
        self.gateway = gateway
        self.render = render
        self.result_ttl_s = gateway.settings.result_ttl_s

    def poll_interval_ms(self, job: JobRecord) -> int:
        service = self.gateway.catalog.services.get(job.service)
        expected_ms = (service.estimated_seconds if service else 10) * 100
        low, high = POLL_INTERVAL_MS
        return round(min(max(expected_ms, low), high))

    def _fields(self, job: JobRecord) -> dict[str, Any]:
        state = TaskState.of(job, self.result_ttl_s)
        return {
            "task_id": job.id,
            "status": state.status,
            "status_message": state.status_message,
            "created_at": job.created_at.isoformat(),
            "last_updated_at": state.last_updated_at.isoformat(),
            "ttl_ms": state.ttl_ms,
            "poll_interval_ms": self.poll_interval_ms(job),
        }

    def created(self, job: JobRecord) -> CreateTaskResult:
        return CreateTaskResult(**self._fields(job))

    def detailed(self, job: JobRecord, caller: Caller) -> dict[str, Any]:
        """The task as ``tasks/get`` and ``notifications/tasks`` give it: with the tool
        result (media as links or inline, as the call would have had it) once completed."""
        fields = self._fields(job)
        if fields["status"] == "completed":
            result = self.render(job, caller)
            fields["result"] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return fields


class TaskMethods:
    """``tasks/get``, ``tasks/update`` and ``tasks/cancel`` for the caller's own tasks."""

    def __init__(self, views: TaskViews, caller_of: CallerOf) -> None:
        self.views = views
        self.gateway = views.gateway
        self.caller_of = caller_of

    async def get(self, ctx: ServerRequestContext[Any], params: TaskParams) -> GetTaskResult:
        caller, _, job = await self.owned(ctx, params.task_id)
        return GetTaskResult(**self.views.detailed(job, caller))

    async def update(self, ctx: ServerRequestContext[Any], params: UpdateTaskParams) -> EmptyResult:
        """Acknowledged: a job never asks for input, so no response is outstanding (and the
        extension has a server ignore responses to requests it did not make)."""
        await self.owned(ctx, params.task_id)
        return EmptyResult()

    async def cancel(self, ctx: ServerRequestContext[Any], params: TaskParams) -> EmptyResult:
        """Cancel the task's job, refunded in full; a task that already ended stays as it
        ended (cancelling is a request, acknowledged either way)."""
        _, account, job = await self.owned(ctx, params.task_id)
        try:
            await self.gateway.cancel(account, job.id)
        except Conflict:
            pass  # it ended meanwhile
        except GpubridgeError as exc:
            raise protocol_error(exc) from exc
        return EmptyResult()

    async def owned(
        self, ctx: ServerRequestContext[Any], task_id: str
    ) -> tuple[Caller, Account, JobRecord]:
        """The caller, their account and the job of ``task_id`` when it is theirs: anyone
        else's task is "not found"."""
        require_client_extension(ctx, TASKS_EXTENSION)
        try:
            caller = self.caller_of(ctx)
            account, job = await owned_job(self.gateway, caller, task_id)
        except GpubridgeError as exc:
            raise protocol_error(exc) from exc
        return caller, account, job


async def owned_job(gateway: Gateway, caller: Caller, task_id: str) -> tuple[Account, JobRecord]:
    """The caller's account and the job of ``task_id`` if that account owns it; NotFound for
    anyone else."""
    if caller.api_key is None:
        raise Unauthorized(
            "tasks are read and cancelled with the API key that started them: send "
            "'Authorization: Bearer gpub_...' (or set GPUBRIDGE_API_KEY for `gpubridge mcp`)",
            code="missing_api_key",
        )
    account = await gateway.accounts.authenticate(caller.api_key)
    job = await gateway.get(task_id)
    if job.account_id != account.id:
        raise NotFound(f"no job {task_id}", code="job_not_found")
    return account, job


def protocol_error(exc: GpubridgeError) -> MCPError:
    """A domain error as the JSON-RPC error of a ``tasks/*`` request; ``data`` carries the
    gpubridge code and message."""
    data = {"code": exc.code, "message": exc.message}
    if isinstance(exc, Expired):
        return MCPError(INVALID_PARAMS, "Failed to retrieve task: Task has expired", data)
    if isinstance(exc, NotFound):
        return MCPError(INVALID_PARAMS, "Failed to retrieve task: Task not found", data)
    if isinstance(exc, Unauthorized):
        return MCPError(INVALID_REQUEST, exc.message, data)
    if exc.status < 500:
        return MCPError(INVALID_PARAMS, exc.message, data)
    return MCPError(INTERNAL_ERROR, exc.message, data)
