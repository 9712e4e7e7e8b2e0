"""The tool list: one tool per catalog service, plus get_job, cancel_job and estimate_cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from mcp_types import Tool, ToolAnnotations

from gpubridge.catalog import Catalog, Service
from gpubridge.catalog.availability import ServiceReport
from gpubridge.catalog.portable import portable_schema
from gpubridge.errors import ConfigurationError, InvalidInput
from gpubridge.gateway.views import price_text
from gpubridge.mcp_server.schemas import ESTIMATE_SCHEMA, job_result_schema

GET_JOB = "get_job"
CANCEL_JOB = "cancel_job"
ESTIMATE_COST = "estimate_cost"
HELPERS = (GET_JOB, CANCEL_JOB, ESTIMATE_COST)
AVAILABLE_META = "gpubridge/available"
REASON_META = "gpubridge/unavailable_reason"
MODELS_META = "gpubridge/models"


class ToolSet:
    """The tools of a catalog, built once at start-up."""

    def __init__(self, catalog: Catalog, wait_s: float) -> None:
        clash = sorted(set(HELPERS) & set(catalog.services))
        if clash:
            raise ConfigurationError(f"catalog services may not be named like MCP tools: {clash}")
        self.catalog = catalog
        self.wait_s = wait_s
        self.tools = [service_tool(s, wait_s) for s in catalog.services.values()]
        self.tools += helper_tools(catalog, wait_s)
        self._by_name = {tool.name: tool for tool in self.tools}
        self._validators = {
            name: Draft202012Validator(helper.input_schema)
            for name, helper in self._by_name.items()
            if name in HELPERS
        }
        self._output_validators = {
            tool.name: Draft202012Validator(tool.output_schema)
            for tool in self.tools
            if tool.output_schema is not None
        }

    def listed(self, reports: Mapping[str, ServiceReport]) -> list[Tool]:
        """The tools as listed now: each service tool says in its description whether it can
        run on this server now and why not, and in ``_meta`` the same for it and its models."""
        listed = []
        for tool in self.tools:
            report = reports.get(tool.name)
            if report is None:
                listed.append(tool)
                continue
            service = self.catalog.services[tool.name]
            meta: dict[str, Any] = {AVAILABLE_META: report.verdict.available}
            if not report.verdict.available:
                meta[REASON_META] = report.verdict.reason
            meta[MODELS_META] = {
                model_id: (
                    {"available": True}
                    if verdict.available
                    else {"available": False, "reason": verdict.reason}
                )
                for model_id, verdict in report.models.items()
            }
            description = service_description(service, self.wait_s, report)
            listed.append(
                tool.model_copy(
                    update={"description": description, "meta": {**(tool.meta or {}), **meta}}
                )
            )
        return listed

    def input_schema(self, name: str) -> dict[str, Any] | None:
        tool = self._by_name.get(name)
        return tool.input_schema if tool is not None else None

    def output_violation(self, name: str, structured: Any) -> str | None:
        """Why ``structured`` does not match the tool's declared output schema, if it does not."""
        validator = self._output_validators.get(name)
        error = best_match(validator.iter_errors(structured)) if validator else None
        if error is None:
            return None
        return f"{'/'.join(map(str, error.absolute_path)) or '(result)'}: {error.message}"

    def validate_helper_arguments(self, name: str, arguments: dict[str, Any]) -> None:
        """Check a helper tool's arguments against its schema, listing every violation."""
        errors = sorted(
            self._validators[name].iter_errors(arguments), key=lambda e: list(e.absolute_path)
        )
        if errors:
            violations = [
                {"path": "/".join(map(str, e.absolute_path)) or "(arguments)", "message": e.message}
                for e in errors
            ]
            summary = "; ".join(f"{v['path']}: {v['message']}" for v in violations)
            raise InvalidInput(f"invalid {name} arguments: {summary}", violations=violations)


def service_tool(service: Service, wait_s: float) -> Tool:
    return Tool(
        name=service.key,
        title=service.name,
        description=service_description(service, wait_s),
        input_schema=portable_schema(service.input_schema),
        output_schema=job_result_schema(service.output_schema),
        annotations=ToolAnnotations(
            title=service.name,
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
    )


def service_description(
    service: Service, wait_s: float, report: ServiceReport | None = None
) -> str:
    """What the service does, what it costs and how long it takes; and, given ``report``,
    whether it and its models can run here now."""
    lines = [service.description.strip(), "", f"Price: {price_text(service.price)}."]
    models = ", ".join(
        m.id + (" (default)" if m is service.default_model else "") for m in service.models
    )
    lines.append(f"Models: {models}.")
    if any(m.price is not None and m.price != service.price for m in service.models):
        lines.append(f"Models have their own rates: {ESTIMATE_COST} prices a call exactly.")
    seconds = f"{service.estimated_seconds:g}"
    if is_long_running(service, wait_s):
        lines.append(
            f"Long-running (about {seconds} s): the call reports progress and waits up to "
            f"{wait_s:g} s, then returns the job id; call {GET_JOB} for the result. Clients "
            "that support MCP tasks get a task at once instead."
        )
    else:
        lines.append(f"Usually answers in about {seconds} s.")
    if report is not None and not report.verdict.available:
        lines.append(f"Not available on this server right now: {report.verdict.reason}.")
    elif report is not None:
        idle = [model_id for model_id, v in report.models.items() if not v.available]
        if idle:
            lines.append(f"Models that cannot run on this server now: {', '.join(idle)}.")
    elif not service.backends:
        lines.append("Not available on this server right now (no backend configured).")
    return "\n".join(lines)


def is_long_running(service: Service, wait_s: float) -> bool:
    """Whether a call is not expected to finish within the MCP wait: a task-capable client
    gets a task for it at once rather than a call held open."""
    return service.mode == "async" or service.estimated_seconds > wait_s / 2


def helper_tools(catalog: Catalog, wait_s: float) -> list[Tool]:
    job_id = {"type": "string", "description": "The job id a service tool returned."}
    return [
        Tool(
            name=GET_JOB,
            title="Get job",
            description=(
                "The status and result of a job by id (results are kept 24 hours). With "
                f"wait_seconds (at most {wait_s:g}), waits for an unfinished job and reports "
                "progress meanwhile."
            ),
            input_schema={
                "type": "object",
                "additionalProperties": False,
                "required": ["job_id"],
                "properties": {
                    "job_id": job_id,
                    "wait_seconds": {"type": "number", "minimum": 0, "maximum": wait_s},
                },
            },
            output_schema=job_result_schema(),
            annotations=ToolAnnotations(
                title="Get job", read_only_hint=True, open_world_hint=False
            ),
        ),
        Tool(
            name=CANCEL_JOB,
            title="Cancel job",
            description="Cancel a pending or running job of yours; its hold is refunded in full.",
            input_schema={
                "type": "object",
                "additionalProperties": False,
                "required": ["job_id"],
                "properties": {"job_id": job_id},
            },
            output_schema=job_result_schema(),
            annotations=ToolAnnotations(
                title="Cancel job",
                read_only_hint=False,
                destructive_hint=True,
                idempotent_hint=True,
                open_world_hint=False,
            ),
        ),
        Tool(
            name=ESTIMATE_COST,
            title="Estimate cost",
            description=(
                "What a call to a service is estimated to cost, before volume discounts. Give "
                "the input you would send for an exact hold, or seconds for per-second "
                "services."
            ),
            input_schema={
                "type": "object",
                "additionalProperties": False,
                "required": ["service"],
                "properties": {
                    "service": {"type": "string", "enum": sorted(catalog.services)},
                    "input": {"type": "object", "description": "The input of the call."},
                    "seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 86_400},
                },
            },
            output_schema=ESTIMATE_SCHEMA,
            annotations=ToolAnnotations(
                title="Estimate cost", read_only_hint=True, open_world_hint=False
            ),
        ),
    ]
