"""The Bazaar discovery extension of x402: how a paid resource is called, so that facilitators
and directories can list it and agents can call it without reading its documentation.

A 402 carries it in the PaymentRequired object as ``extensions.bazaar``: ``info`` (an example
call: the HTTP method and JSON body, or the MCP tool and its arguments; and an example answer)
and ``schema`` (a JSON Schema that ``info`` satisfies, holding the input's own schema). The
shapes are those the x402 SDK's ``declare_discovery_extension`` (HTTP, with the method filled in
as its resource-server extension does) and ``declare_mcp_discovery_extension`` write.

A v1 requirement carries the same description in ``outputSchema``, the v1 way.
"""

from __future__ import annotations

import copy
from typing import Any

BAZAAR = "bazaar"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
MCP_TRANSPORT = "streamable-http"


def http_extension(
    *,
    method: str,
    body: dict[str, Any],
    body_schema: dict[str, Any],
    output_example: dict[str, Any] | None = None,
    output_schema: dict[str, Any] | None = None,
    body_type: str = "json",
) -> dict[str, Any]:
    """An HTTP resource taking a body (``POST``, ``PUT`` or ``PATCH``; ``json`` or
    ``form-data``): ``body`` is an example request body valid under ``body_schema``, and
    ``output_example`` (when given) an answer valid under ``output_schema``."""
    body_schema, body_defs = _inline(body_schema)
    output_schema, output_defs = _inline(output_schema or {})
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": {
            "input": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "const": "http"},
                    "method": {"type": "string", "enum": ["POST", "PUT", "PATCH"]},
                    "bodyType": {"type": "string", "enum": ["json", "form-data", "text"]},
                    "body": body_schema,
                },
                "required": ["type", "method", "bodyType", "body"],
                "additionalProperties": False,
            },
        },
        "required": ["input"],
    }
    info: dict[str, Any] = {
        "input": {"type": "http", "method": method, "bodyType": body_type, "body": body}
    }
    if output_example is not None:
        schema["properties"]["output"] = _output_schema({"type": "object", **output_schema})
        info["output"] = {"type": "json", "example": output_example}
    _hoist(schema, {**body_defs, **output_defs})
    return {"info": info, "schema": schema}


def mcp_extension(
    *,
    tool: str,
    description: str,
    input_schema: dict[str, Any],
    example: dict[str, Any],
    output_example: dict[str, Any],
    output_schema: dict[str, Any],
) -> dict[str, Any]:
    """An MCP tool served over streamable HTTP: ``example`` is a valid set of arguments."""
    output_schema, output_defs = _inline(output_schema)
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": {
            "input": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "const": "mcp"},
                    "toolName": {"type": "string"},
                    "inputSchema": {"type": "object"},
                    "description": {"type": "string"},
                    "transport": {"type": "string", "enum": ["streamable-http", "sse"]},
                    "example": {"type": "object"},
                },
                "required": ["type", "toolName", "inputSchema"],
                "additionalProperties": False,
            },
            "output": _output_schema(output_schema),
        },
        "required": ["input"],
    }
    _hoist(schema, output_defs)
    return {
        "info": {
            "input": {
                "type": "mcp",
                "toolName": tool,
                "description": description,
                "transport": MCP_TRANSPORT,
                "inputSchema": input_schema,
                "example": example,
            },
            "output": {"type": "json", "example": output_example},
        },
        "schema": schema,
    }


def v1_output_schema(extension: dict[str, Any]) -> dict[str, Any] | None:
    """The v1 requirement's ``outputSchema`` for an HTTP resource's extension (None for an
    MCP tool, which x402 v1 does not describe)."""
    info = extension["info"]
    call = info["input"]
    if call.get("type") != "http":
        return None
    return {
        "input": {
            "type": "http",
            "method": call["method"],
            "discoverable": True,
            "bodyType": call["bodyType"],
            "body": call["body"],
        },
        **({"output": info["output"]["example"]} if "output" in info else {}),
    }


def _output_schema(example_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"type": {"type": "string"}, "example": example_schema},
        "required": ["type"],
    }


def _inline(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``schema`` to nest inside the extension's schema: without its own ``$schema`` and
    ``$id``, and with its ``$defs`` apart, to be hoisted to the root, where its
    ``#/$defs/...`` references resolve."""
    nested = copy.deepcopy(schema)
    nested.pop("$schema", None)
    nested.pop("$id", None)
    definitions: dict[str, Any] = nested.pop("$defs", {})
    return nested, definitions


def _hoist(schema: dict[str, Any], definitions: dict[str, Any]) -> None:
    if definitions:
        schema["$defs"] = definitions
