"""The MCP server: the catalog's services as tools, and the catalog as a resource."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    ListResourcesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    Resource,
    TextResourceContents,
)

from gpubridge.gateway import Gateway, service_summary
from gpubridge.mcp_server.caller import Caller, caller_of
from gpubridge.mcp_server.calls import ToolCalls
from gpubridge.mcp_server.errors import guarded
from gpubridge.mcp_server.progress import Progress
from gpubridge.mcp_server.task_listen import TaskListen
from gpubridge.mcp_server.tasks import (
    TASKS_EXTENSION,
    CreateTaskResult,
    TaskMethods,
    TaskParams,
    UpdateTaskParams,
    offers_tasks,
)
from gpubridge.mcp_server.tools import ESTIMATE_COST, GET_JOB, ToolSet

CATALOG_URI = "gpubridge://catalog"

INSTRUCTIONS = f"""\
gpubridge runs AI models on GPUs: each tool is one service (LLMs, embeddings, vision, image,
video, speech, music, utilities), billed per call from prepaid credits. A call waits for its
job and reports progress; a job that takes longer returns its job_id, which {GET_JOB} finishes
(a client with MCP tasks gets a task for it instead, which tasks/get finishes).
{ESTIMATE_COST} prices a call beforehand; the resource {CATALOG_URI} lists every service and
the payment methods offered."""
X402_ON = """
A call without an API key can pay with x402 (the x402 MCP transport): it answers with the
PaymentRequired object, and the paid retry carries the payment in _meta["x402/payment"]."""
X402_OFF = """
x402 payments are not offered on this server: calls need an API key (POST /account/register
over HTTP), sent as 'Authorization: Bearer gpub_...' or set as GPUBRIDGE_API_KEY."""


def instructions(gateway: Gateway) -> str:
    """The server's instructions, saying whether x402 is offered."""
    return INSTRUCTIONS + (X402_ON if gateway.x402 is not None else X402_OFF)


def build_server(gateway: Gateway, *, local_api_key: str | None = None) -> Server[Any]:
    """A low-level MCP server over ``gateway``.

    ``local_api_key`` pays for calls that arrive without an HTTP request (stdio); calls over
    HTTP are paid only by their own ``Authorization: Bearer`` key.
    """
    tools = ToolSet(gateway.catalog, gateway.settings.mcp_wait_s)
    calls = ToolCalls(gateway, tools)
    public_url = gateway.settings.public_url

    def caller(ctx: ServerRequestContext[Any]) -> Caller:
        return caller_of(ctx.request, ctx.meta, local_api_key=local_api_key, public_url=public_url)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return ListToolsResult(tools=tools.listed(await gateway.availability.reports()))

    async def call_tool(
        ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult | CreateTaskResult:
        async def run() -> CallToolResult | CreateTaskResult:
            progress = Progress(ctx.session.report_progress)
            arguments = dict(params.arguments or {})
            tasks = offers_tasks(ctx)
            return await calls.call(params.name, arguments, caller(ctx), progress, tasks=tasks)

        return await guarded(run(), params.name)

    async def list_resources(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        return ListResourcesResult(
            resources=[
                Resource(
                    uri=CATALOG_URI,
                    name="catalog",
                    title="gpubridge service catalog",
                    description="Every service: models, prices, input and output schemas.",
                    mime_type="application/json",
                )
            ]
        )

    async def read_resource(
        ctx: ServerRequestContext[Any], params: ReadResourceRequestParams
    ) -> ReadResourceResult:
        if params.uri != CATALOG_URI:
            raise MCPError(INVALID_PARAMS, f"unknown resource {params.uri}; try {CATALOG_URI}")
        reports = await gateway.availability.reports()
        services = [service_summary(s, reports[s.key]) for s in gateway.catalog.services.values()]
        return ReadResourceResult(
            contents=[
                TextResourceContents(
                    uri=CATALOG_URI,
                    mime_type="application/json",
                    text=json.dumps(
                        {"services": services, "payments": gateway.payment_rails.view()}
                    ),
                )
            ]
        )

    task_methods = TaskMethods(calls.tasks, caller)
    server: Server[Any] = Server(
        "gpubridge",
        version=_version(),
        title="gpubridge",
        instructions=instructions(gateway),
        get_tool_input_schema=tools.input_schema,
        on_list_tools=list_tools,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_subscriptions_listen=TaskListen(calls.tasks, caller),
    )
    # A tool call may answer with a task, a result type outside ``on_call_tool``'s signature;
    # the low-level server takes the extension's methods as plain request handlers.
    server.add_request_handler("tools/call", CallToolRequestParams, call_tool)
    server.add_request_handler("tasks/get", TaskParams, task_methods.get)
    server.add_request_handler("tasks/update", UpdateTaskParams, task_methods.update)
    server.add_request_handler("tasks/cancel", TaskParams, task_methods.cancel)
    server.extensions[TASKS_EXTENSION] = {}
    return server


def _version() -> str:
    try:
        return version("gpubridge")
    except PackageNotFoundError:
        return "0.0.0"
