"""Output schemas of the tools: a job result wrapping the service's own output schema."""

from __future__ import annotations

import copy
from typing import Any

from gpubridge.catalog.portable import portable_schema
from gpubridge.jobs.status import JobStatus
from gpubridge.mcp_server.media import MEDIA_FIELDS


def _or_null(kind: str) -> dict[str, Any]:
    """A value of type ``kind``, or null: two ``anyOf`` branches rather than a list of types,
    which clients with a single-type schema dialect reject."""
    return {"anyOf": [{"type": kind}, {"type": "null"}]}


_NUMBER_OR_NULL = _or_null("number")
_STRING_OR_NULL = _or_null("string")

MEDIA_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["path", "mime_type", "size_bytes", "delivery"],
    "properties": {
        "path": {"type": "string", "description": "Where the media sat in the output."},
        "mime_type": {"type": "string"},
        "size_bytes": {"type": "integer", "minimum": 0},
        "delivery": {
            "enum": ["inline", "link"],
            "description": "inline: an image/audio content block; link: a resource_link.",
        },
        "uri": {"type": "string", "description": "Where to fetch it when delivered as a link."},
    },
}


def job_result_schema(output_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shape of a job as a tool returns it, finished or not.

    ``output`` (present once the job completed) follows the service's output schema, less
    its base64 media fields: those travel as content blocks or links and are listed in
    ``media``. Lists of types in it are written as ``anyOf`` branches (``portable_schema``).
    """
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["job_id", "service", "status", "status_url"],
        "properties": {
            "job_id": {"type": "string"},
            "id": {"type": "string"},
            "service": {"type": "string"},
            "model": _STRING_OR_NULL,
            "status": {"enum": [s.value for s in JobStatus]},
            "status_url": {"type": "string"},
            "created_at": _STRING_OR_NULL,
            "started_at": _STRING_OR_NULL,
            "completed_at": _STRING_OR_NULL,
            "execution_time_seconds": _NUMBER_OR_NULL,
            "estimated_cost_usd": _NUMBER_OR_NULL,
            "cost_usd": _NUMBER_OR_NULL,
            "refunded_usd": _NUMBER_OR_NULL,
            "backend": _STRING_OR_NULL,
            "output": {"type": "object"},
            "usage": _or_null("object"),
            "progress": _or_null("object"),
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
            "media": {"type": "array", "items": MEDIA_ITEM_SCHEMA},
        },
    }
    if output_schema is not None:
        output, definitions = _without_media(output_schema)
        schema["properties"]["output"] = output
        if definitions:
            schema["$defs"] = definitions
    return schema


ESTIMATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["service", "model", "pricing_unit", "estimated_cost_usd"],
    "properties": {
        "service": {"type": "string"},
        "model": {"type": "string"},
        "pricing_unit": {"type": "string"},
        "estimated_units": {"type": "integer"},
        "estimated_seconds": {"type": "number"},
        "minimum_cost_usd": {"type": "number"},
        "estimated_cost_usd": {"type": "number"},
    },
}


def _without_media(output_schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The service's output schema nested under ``output``: its ``$defs`` move to the root
    (so ``#/$defs/...`` references still resolve) and media fields are no longer required."""
    output = copy.deepcopy(portable_schema(output_schema))
    output.pop("$schema", None)
    output.pop("$id", None)
    definitions = output.pop("$defs", {})
    required = output.get("required")
    if isinstance(required, list):
        output["required"] = [name for name in required if name not in MEDIA_FIELDS]
    return output, definitions
