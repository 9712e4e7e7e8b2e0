"""What each tool does: run a service, get, cancel or estimate a job, through the gateway."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mcp_types import CallToolResult, TextContent

from gpubridge.errors import NotFound, Unauthorized
from gpubridge.gateway import Gateway, job_view
from gpubridge.jobs.store import JobRecord
from gpubridge.mcp_server.caller import Caller
from gpubridge.mcp_server.payment import Payments
from gpubridge.mcp_server.progress import Progress, progress_while_waiting
from gpubridge.mcp_server.results import estimate_result, job_result, pending_result
from gpubridge.mcp_server.tasks import CreateTaskResult, TaskViews
from gpubridge.mcp_server.tools import (
    CANCEL_JOB,
    ESTIMATE_COST,
    GET_JOB,
    HELPERS,
    ToolSet,
    is_long_running,
)
from gpubridge.payments.accounts import Account
from gpubridge.suggest import did_you_mean

log = logging.getLogger(__name__)


class ToolCalls:
    """Runs tool calls on the gateway; domain errors propagate to the one error table."""

    def __init__(self, gateway: Gateway, tools: ToolSet) -> None:
        self.gateway = gateway
        self.tools = tools
        self.payments = Payments(gateway)
        self.wait_s = gateway.settings.mcp_wait_s
        self.inline_media_bytes = gateway.settings.mcp_inline_media_bytes
        self.tasks = TaskViews(gateway, self.render_finished)

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        caller: Caller,
        progress: Progress,
        *,
        tasks: bool = False,
    ) -> CallToolResult | CreateTaskResult:
        """Run one tool call; with ``tasks`` (the client declared MCP tasks on the request) a
        service whose job outlasts the call answers with its task instead."""
        if name == GET_JOB:
            return await self.get_job(arguments, caller, progress)
        if name == CANCEL_JOB:
            return await self.cancel_job(arguments, caller)
        if name == ESTIMATE_COST:
            return self.estimate_cost(arguments)
        if name in self.gateway.catalog.services:
            return await self.run_service(name, arguments, caller, progress, tasks=tasks)
        hint, suggestion = did_you_mean(name, [*self.gateway.catalog.services, *HELPERS])
        details = {} if suggestion is None else {"suggestion": suggestion}
        raise NotFound(
            f"unknown tool {name!r}{hint}; tools/list lists the tools",
            code="unknown_tool",
            **details,
        )

    async def run_service(
        self,
        service: str,
        arguments: dict[str, Any],
        caller: Caller,
        progress: Progress,
        *,
        tasks: bool = False,
    ) -> CallToolResult | CreateTaskResult:
        """Validate, take payment, submit (unless an x402 payment did), and wait (with
        progress) up to the MCP wait.

        With ``tasks``, a call paid with an API key (the credentials ``tasks/get`` checks)
        answers with its task: at once for a long-running service, or when the wait runs out.
        """
        # Validates the input first: a bad call is answered before any payment or charge.
        estimate = self.gateway.estimate(service, payload=arguments)
        payer = await self.payments.payment_for_call(caller, service, arguments, estimate)
        if isinstance(payer, CallToolResult):
            return payer
        submitted = payer.submitted or await self.gateway.submit(payer.account, service, arguments)
        as_task = tasks and caller.api_key is not None
        long_running = is_long_running(self.gateway.catalog.services[service], self.wait_s)
        if as_task and long_running and not submitted.job.status.is_terminal:
            return self.tasks.created(submitted.job)
        job = await self._wait(
            submitted.job, self.wait_s, progress, owner=payer.account, unseen=submitted.unseen
        )
        if as_task and not job.status.is_terminal:
            return self.tasks.created(job)
        result = self._render(service, job, caller, failed_is_error=True)
        meta = await self.payments.result_meta(payer, job.status.is_terminal)
        if meta:
            result.meta = {**(result.meta or {}), **meta}
        return result

    async def get_job(
        self, arguments: dict[str, Any], caller: Caller, progress: Progress
    ) -> CallToolResult:
        self.tools.validate_helper_arguments(GET_JOB, arguments)
        try:
            job = await self.gateway.get(arguments["job_id"])
        except NotFound:
            # A paid request waiting for its settlement has its job id before its job.
            pending = await self.gateway.pending_view(arguments["job_id"])
            if pending is None:
                raise
            return pending_result(pending, self.gateway.settings.public_url)
        wait_s = min(float(arguments.get("wait_seconds", 0)), self.wait_s)
        job = await self._wait(job, wait_s, progress, owner=None)
        return self._render(GET_JOB, job, caller, failed_is_error=False)

    async def cancel_job(self, arguments: dict[str, Any], caller: Caller) -> CallToolResult:
        self.tools.validate_helper_arguments(CANCEL_JOB, arguments)
        if caller.api_key is None:
            raise Unauthorized(
                "cancel_job needs the API key that started the job", code="missing_api_key"
            )
        account = await self.gateway.accounts.authenticate(caller.api_key)
        job = await self.gateway.cancel(account, arguments["job_id"])
        return self._render(CANCEL_JOB, job, caller, failed_is_error=False)

    def estimate_cost(self, arguments: dict[str, Any]) -> CallToolResult:
        self.tools.validate_helper_arguments(ESTIMATE_COST, arguments)
        estimate = self.gateway.estimate(
            arguments["service"], seconds=arguments.get("seconds"), payload=arguments.get("input")
        )
        return estimate_result(estimate)

    async def _wait(
        self,
        job: JobRecord,
        wait_s: float,
        progress: Progress,
        *,
        owner: Account | None,
        unseen: bool = False,
    ) -> JobRecord:
        """Wait for the job with progress; a call the client abandons cancels the job it
        started (refunded in full). An ``unseen`` job is one the call answers with
        (``Gateway.wait_to_answer``)."""
        if job.status.is_terminal or wait_s <= 0:
            return job
        try:
            async with progress_while_waiting(self.gateway, job, progress):
                return await self.gateway.wait_to_answer(job, wait_s, unseen=unseen)
        except asyncio.CancelledError:
            if owner is not None:
                await self.gateway.abandon(owner, job.id)
            raise

    def render_finished(self, job: JobRecord, caller: Caller) -> CallToolResult:
        """A job's result as its service's tool call returns it."""
        return self._render(job.service, job, caller, failed_is_error=True)

    def _render(
        self, tool: str, job: JobRecord, caller: Caller, *, failed_is_error: bool
    ) -> CallToolResult:
        result = job_result(
            job_view(job, caller.base_url),
            inline_media_bytes=self.inline_media_bytes,
            failed_is_error=failed_is_error,
        )
        violation = (
            None
            if result.is_error
            else self.tools.output_violation(tool, result.structured_content)
        )
        if violation is None:
            return result
        # Clients reject a result that contradicts the declared schema and would lose the
        # output; as an error result it still reaches them, with the reason.
        log.warning(
            "job output does not match the declared output schema",
            extra={"tool": tool, "job_id": job.id, "violation": violation},
        )
        note = TextContent(
            text=f"output_schema_mismatch: the output of {tool} does not match its declared "
            f"output schema ({violation}); the job completed and the output follows."
        )
        return result.model_copy(update={"content": [note, *result.content], "is_error": True})
