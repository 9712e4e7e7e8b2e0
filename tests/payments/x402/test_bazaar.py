"""The Bazaar discovery extension, checked against what the official x402 SDK declares and
reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from x402.extensions.bazaar import (
    BodyDiscoveryExtension,
    DeclareMcpDiscoveryConfig,
    McpDiscoveryExtension,
    OutputConfig,
    bazaar_resource_server_extension,
    declare_discovery_extension,
    declare_mcp_discovery_extension,
    extract_discovery_info,
    validate_discovery_extension,
)
from x402.extensions.bazaar.types import parse_discovery_extension

from gpubridge.payments.x402.bazaar import BAZAAR, http_extension, mcp_extension, v1_output_schema

BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["service", "input"],
    "properties": {
        "service": {"type": "string", "enum": ["caption"]},
        "input": {"type": "object", "properties": {"image_url": {"type": "string"}}},
    },
}
BODY = {"service": "caption", "input": {"image_url": "https://example.com/image.png"}}
OUTPUT_SCHEMA: dict[str, Any] = {
    "required": ["job_id", "status"],
    "properties": {"job_id": {"type": "string"}, "status": {"type": "string"}},
}
OUTPUT = {"job_id": "j1", "status": "pending"}


@dataclass
class Posted:
    """What the SDK's resource-server extension reads of a request: its method."""

    method: str


def test_an_http_extension_is_what_the_sdk_declares_for_a_post_route():
    declared = declare_discovery_extension(
        input=BODY,
        input_schema=BODY_SCHEMA,
        body_type="json",
        output=OutputConfig(example=OUTPUT, schema=OUTPUT_SCHEMA),
    )[BAZAAR]
    enriched = bazaar_resource_server_extension.enrich_declaration(declared, Posted("POST"))

    ours = http_extension(
        method="POST",
        body=BODY,
        body_schema=BODY_SCHEMA,
        output_example=OUTPUT,
        output_schema=OUTPUT_SCHEMA,
    )

    assert ours == enriched
    parsed = parse_discovery_extension(ours)
    assert isinstance(parsed, BodyDiscoveryExtension)
    assert parsed.info.input.method == "POST"
    assert validate_discovery_extension(parsed).valid


def test_an_mcp_extension_is_what_the_sdk_declares_for_a_paid_tool():
    declared = declare_mcp_discovery_extension(
        DeclareMcpDiscoveryConfig(
            tool_name="caption",
            description="Describe an image.",
            transport="streamable-http",
            input_schema=BODY_SCHEMA["properties"]["input"],
            example=BODY["input"],
            output=OutputConfig(example=OUTPUT, schema=OUTPUT_SCHEMA),
        )
    )[BAZAAR]

    ours = mcp_extension(
        tool="caption",
        description="Describe an image.",
        input_schema=BODY_SCHEMA["properties"]["input"],
        example=BODY["input"],
        output_example=OUTPUT,
        output_schema=OUTPUT_SCHEMA,
    )

    assert ours == declared
    parsed = parse_discovery_extension(ours)
    assert isinstance(parsed, McpDiscoveryExtension)
    assert validate_discovery_extension(parsed).valid


def test_definitions_of_a_nested_schema_move_to_the_root_where_references_resolve():
    output_schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"seed": {"$ref": "#/$defs/seed"}},
        "$defs": {"seed": {"type": "integer"}},
    }
    good = http_extension(
        method="POST",
        body=BODY,
        body_schema=BODY_SCHEMA,
        output_example={"seed": 7},
        output_schema=output_schema,
    )
    bad = {**good, "info": {**good["info"], "output": {"type": "json", "example": {"seed": "x"}}}}

    assert good["schema"]["$defs"] == {"seed": {"type": "integer"}}
    assert validate_discovery_extension(parse_discovery_extension(good)).valid
    assert not validate_discovery_extension(parse_discovery_extension(bad)).valid


def test_without_an_output_example_the_extension_describes_the_request_only():
    extension = http_extension(
        method="POST", body={"file": "speech.mp3"}, body_schema={}, body_type="form-data"
    )

    assert "output" not in extension["info"]
    assert "output" not in extension["schema"]["properties"]
    assert extension["info"]["input"]["bodyType"] == "form-data"
    assert validate_discovery_extension(parse_discovery_extension(extension)).valid


def test_a_v1_requirement_carries_the_description_the_sdk_reads_from_output_schema():
    extension = http_extension(
        method="POST",
        body=BODY,
        body_schema=BODY_SCHEMA,
        output_example=OUTPUT,
        output_schema=OUTPUT_SCHEMA,
    )
    requirements = {
        "scheme": "exact",
        "network": "base",
        "maxAmountRequired": "10000",
        "resource": "https://gpu.example.com/run",
        "description": "Image Captioning (caption) job",
        "mimeType": "application/json",
        "payTo": "0x" + "5e" * 20,
        "maxTimeoutSeconds": 300,
        "asset": "0x" + "aa" * 20,
        "outputSchema": v1_output_schema(extension),
    }

    found = extract_discovery_info({"x402Version": 1}, requirements)

    assert found is not None
    assert found.method == "POST"
    assert found.resource_url == "https://gpu.example.com/run"
    assert found.discovery_info.input.body == BODY  # type: ignore[union-attr]
    assert v1_output_schema(mcp_extension_of_caption()) is None


def mcp_extension_of_caption() -> dict[str, Any]:
    return mcp_extension(
        tool="caption",
        description="Describe an image.",
        input_schema={},
        example={},
        output_example=OUTPUT,
        output_schema=OUTPUT_SCHEMA,
    )
