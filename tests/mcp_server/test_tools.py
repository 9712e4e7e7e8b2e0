"""The tool list and the catalog resource, generated from the catalog."""

from __future__ import annotations

import json

import pytest

from gpubridge.catalog import Catalog
from gpubridge.catalog.loader import load_catalog_file
from gpubridge.errors import ConfigurationError
from gpubridge.mcp_server.schemas import job_result_schema
from gpubridge.mcp_server.tools import (
    AVAILABLE_META,
    HELPERS,
    MODELS_META,
    REASON_META,
    ToolSet,
    price_text,
)
from tests.mcp_server.conftest import StartGateway
from tests.mcp_server.media_engine import MEDIA_SERVICE, MEDIA_SERVICE_ENTRY
from tests.support.gateway_app import packaged_catalog, write_catalog
from tests.support.hf_cache import use_hub


async def test_every_packaged_service_is_a_tool_with_its_catalog_schema(
    start_gateway: StartGateway,
):
    async with start_gateway(media=False) as running, running.client() as client:
        listed = (await client.list_tools()).tools
        catalog = running.gateway.catalog
        by_name = {tool.name: tool for tool in listed}

        assert len(catalog.services) == 26
        assert set(by_name) == set(catalog.services) | set(HELPERS)
        for key, service in catalog.services.items():
            tool = by_name[key]
            assert tool.input_schema == service.input_schema
            assert tool.title == service.name
            assert service.description.split(".")[0] in (tool.description or "")
            assert price_text(service.price) in (tool.description or "")
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is False
            assert tool.annotations.open_world_hint is True
            assert tool.annotations.idempotent_hint is False
            assert tool.annotations.title == service.name
            assert tool.output_schema is not None
            assert tool.output_schema["required"] == ["job_id", "service", "status", "status_url"]


async def test_descriptions_give_price_unit_and_whether_the_service_is_long_running(
    running,
):
    async with running.client() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    llm = tools["llm-4090"].description or ""
    assert "from $0.003 ($0.59 per 1M input tokens, $0.79 per 1M output tokens)" in llm
    assert "llama-3.3-70b-versatile (default)" in llm
    assert "Usually answers" in llm
    image = tools["image-4090"].description or ""
    assert "$0.003 per output" in image
    assert "Long-running" in image and "get_job" in image
    assert "second of audio" in (tools["whisper-l4"].description or "")


async def test_each_service_tool_says_whether_it_can_run_here_now(
    start_gateway: StartGateway, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    use_hub(monkeypatch, tmp_path / "hub", offline=True)  # nothing downloaded, no hub
    async with start_gateway() as running, running.client() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    llm = tools["llm-4090"]
    assert llm.meta is not None and llm.meta[AVAILABLE_META] is True
    assert REASON_META not in llm.meta
    assert "Not available" not in (llm.description or "")
    caption = tools["caption"]
    assert caption.meta is not None and caption.meta[AVAILABLE_META] is False
    reason = caption.meta[REASON_META]
    assert "`gpubridge models pull blip-large`" in reason
    assert f"Not available on this server right now: {reason}." in (caption.description or "")
    assert caption.meta[MODELS_META]["blip-large"] == {"available": False, "reason": reason}
    assert tools[MEDIA_SERVICE].meta == {
        AVAILABLE_META: True,
        MODELS_META: {m["id"]: {"available": True} for m in MEDIA_SERVICE_ENTRY["models"]},
    }
    assert tools["get_job"].meta is None


async def test_a_service_with_an_output_schema_declares_it_under_output(running):
    async with running.client() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    catalog = running.gateway.catalog
    llm_output = tools["llm-4090"].output_schema["properties"]["output"]  # type: ignore[index]
    assert llm_output == catalog.services["llm-4090"].output_schema
    plain = next(key for key, s in catalog.services.items() if s.output_schema is None)
    generic = tools[plain].output_schema["properties"]["output"]  # type: ignore[index]
    assert generic == {"type": "object"}
    assert tools["get_job"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert tools["cancel_job"].annotations.destructive_hint is True  # type: ignore[union-attr]


async def test_a_service_an_operator_adds_to_the_catalog_is_a_tool_without_code(running):
    async with running.client() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert len(tools) == 27 + len(HELPERS)
    added = tools[MEDIA_SERVICE]
    assert added.input_schema == MEDIA_SERVICE_ENTRY["input_schema"]
    assert MEDIA_SERVICE_ENTRY["description"] in (added.description or "")


async def test_the_catalog_is_a_json_resource(running):
    async with running.client() as client:
        resources = (await client.list_resources()).resources
        assert [r.uri for r in resources] == ["gpubridge://catalog"]
        assert resources[0].mime_type == "application/json"
        read = await client.read_resource("gpubridge://catalog")
    body = json.loads(read.contents[0].text)  # type: ignore[union-attr]
    keys = [s["key"] for s in body["services"]]
    assert keys == list(running.gateway.catalog.services)
    llm = next(s for s in body["services"] if s["key"] == "llm-4090")
    assert llm["input_schema"] == running.gateway.catalog.services["llm-4090"].input_schema


async def test_an_unknown_resource_is_a_protocol_error(running):
    from mcp.shared.exceptions import MCPError

    async with running.client() as client:
        with pytest.raises(MCPError, match="unknown resource"):
            await client.read_resource("gpubridge://nothing")


def test_a_service_named_like_a_helper_tool_refuses_to_start(tmp_path):
    def edit(data):
        data["services"]["get_job"] = data["services"]["caption"]

    catalog = Catalog(load_catalog_file(write_catalog(tmp_path / "c.yaml", edit)))
    with pytest.raises(ConfigurationError, match="get_job"):
        ToolSet(catalog, 50)


def test_nested_output_schemas_keep_their_definitions_and_drop_required_media():
    schema = job_result_schema(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["image", "seed"],
            "properties": {"image": {"type": "string"}, "seed": {"$ref": "#/$defs/seed"}},
            "$defs": {"seed": {"type": "integer"}},
        }
    )
    assert schema["$defs"] == {"seed": {"type": "integer"}}
    assert schema["properties"]["output"]["required"] == ["seed"]
    assert "$schema" not in schema["properties"]["output"]


def test_the_packaged_catalog_has_no_service_named_like_a_helper():
    assert not set(packaged_catalog()["services"]) & set(HELPERS)
