"""Tool schemas that clients with a single-type schema dialect accept (Gemini function
declarations, OpenAPI 3.0 subsets, the MCP Inspector's strict check)."""

from __future__ import annotations

import copy
from typing import Any

import anyio

from gpubridge.mcp_server.schemas import job_result_schema
from tests.mcp_server.conftest import StartGateway, http_client, serve_http
from tests.mcp_server.media_engine import MEDIA_SERVICE, MEDIA_SERVICE_ENTRY
from tests.support.schema_checks import portability_problems


def nullable_operator_service(data: dict[str, Any]) -> None:
    """An operator's service whose schemas write nullable fields as lists of types."""
    entry = copy.deepcopy(MEDIA_SERVICE_ENTRY)
    entry["input_schema"]["properties"]["label"] = {"type": ["string", "null"], "maxLength": 8}
    entry["output_schema"] = {
        "type": "object",
        "properties": {"seed": {"type": ["integer", "null"]}, "image": {"type": "string"}},
    }
    data["services"][MEDIA_SERVICE] = entry


async def test_every_tool_schema_listed_over_http_has_one_type_per_schema(
    start_gateway: StartGateway,
):
    async with (
        start_gateway(edit=nullable_operator_service) as running,
        serve_http(running.app) as url,
    ):
        key = await running.funded_key()
        async with http_client(url, key) as client:
            with anyio.fail_after(30):
                tools = (await client.list_tools()).tools
                valid = await client.call_tool(MEDIA_SERVICE, {"size_bytes": 64, "label": None})
                too_long = await client.call_tool(MEDIA_SERVICE, {"label": "x" * 9})

    assert len(tools) == 27 + 3
    problems = []
    for tool in tools:
        assert tool.output_schema is not None
        problems += portability_problems(tool.input_schema, f"{tool.name} input")
        problems += portability_problems(tool.output_schema, f"{tool.name} output")
    assert problems == []
    added = next(tool for tool in tools if tool.name == MEDIA_SERVICE)
    assert added.input_schema["properties"]["label"] == {
        "anyOf": [{"type": "string", "maxLength": 8}, {"type": "null"}]
    }
    output = added.output_schema["properties"]["output"]  # type: ignore[index]
    assert output["properties"]["seed"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    # The catalog's own schema still validates calls: null is a label, nine letters are not.
    assert not valid.is_error, valid.content
    assert too_long.is_error
    assert "label" in str(too_long.structured_content)


def test_the_job_result_schema_writes_nullable_fields_as_branches():
    schema = job_result_schema()

    assert portability_problems(schema) == []
    assert schema["properties"]["cost_usd"] == {"anyOf": [{"type": "number"}, {"type": "null"}]}
    assert schema["properties"]["usage"] == {"anyOf": [{"type": "object"}, {"type": "null"}]}


def test_the_check_finds_what_a_single_type_dialect_rejects():
    assert portability_problems({"properties": {"a": {"type": ["string", "null"]}}}) == [
        "/properties/a: type is a list ['string', 'null']"
    ]
    assert portability_problems({"type": "string", "enum": ["a", None]}) == [
        "/: enum values [None] are not string"
    ]
    assert portability_problems({"type": "string", "nullable": True}) == ["/: nullable"]
    assert portability_problems({"anyOf": [{"type": "string"}, {"type": "null"}]}) == []
    assert portability_problems({"default": {"type": ["data"]}, "description": "x"}) == []
