"""The MCP server mounted at /mcp of the HTTP app, through the SDK's streamable HTTP client."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from gpubridge.mcp_server.http_app import transport_security
from gpubridge.settings import Settings
from tests.mcp_server.conftest import (
    FUNDS_MICROS,
    LLM_CALL,
    StartGateway,
    http_client,
    serve_http,
)
from tests.mcp_server.test_progress import Recorder

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_bearer_key_over_http_pays_for_its_calls(start_gateway: StartGateway, mode):
    async with start_gateway(media=False) as running, serve_http(running.app) as url:
        key = await running.funded_key()
        async with http_client(url, key, mode=mode) as client:
            with anyio.fail_after(30):
                tools = (await client.list_tools()).tools
                result = await client.call_tool("llm-4090", LLM_CALL)
        assert len(tools) == 26 + 3
        assert not result.is_error
        job = result.structured_content
        assert job["status_url"] == f"{url}/status/{job['job_id']}"
        spent = round(job["cost_usd"] * 1_000_000)
        assert spent > 0
        assert await running.balance_micros(key) == FUNDS_MICROS - spent


async def test_progress_notifications_reach_an_http_client(start_gateway: StartGateway, upstream):
    upstream.behaviour.delay_s = 0.4
    async with start_gateway() as running, serve_http(running.app) as url:
        key = await running.funded_key()
        recorder = Recorder()
        async with http_client(url, key, mode="legacy") as client:
            with anyio.fail_after(30):
                result = await client.call_tool("llm-4090", LLM_CALL, progress_callback=recorder)
        assert not result.is_error
        assert "running" in recorder.messages


async def test_over_http_the_servers_own_key_never_pays_for_an_anonymous_call(
    start_gateway: StartGateway,
):
    async with start_gateway(x402_enabled=False) as seed:
        key = await seed.funded_key()
    async with start_gateway(x402_enabled=False, api_key=key) as running:
        async with serve_http(running.app) as url, http_client(url, None) as client:
            result = await client.call_tool("llm-4090", LLM_CALL)
            bad_scheme = await _call_with_header(url, "Basic abc")
        assert result.is_error
        assert result.structured_content["error"]["code"] == "payment_required"
        assert await running.balance_micros(key) == FUNDS_MICROS
        assert bad_scheme["structuredContent"]["error"]["code"] == "invalid_api_key"


async def _call_with_header(url: str, authorization: str) -> dict:
    """A tools/call over the stateful HTTP transport with a raw Authorization header."""
    headers = {**MCP_HEADERS, "Authorization": authorization}
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        opened = await http.post("/mcp", json=INITIALIZE)
        session = {"mcp-session-id": opened.headers["mcp-session-id"]}
        version = {"mcp-protocol-version": "2025-11-25"}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await http.post("/mcp", json=initialized, headers={**session, **version})
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "llm-4090", "arguments": LLM_CALL},
        }
        response = await http.post("/mcp", json=call, headers={**session, **version})
        data = next(
            line.removeprefix("data: ")
            for line in response.text.splitlines()
            if line.startswith("data: ")
        )
    result: dict = json.loads(data)["result"]
    return result


async def test_requests_for_other_hosts_are_refused(start_gateway: StartGateway):
    async with (
        start_gateway() as running,
        serve_http(running.app) as url,
        httpx.AsyncClient(base_url=url, headers=MCP_HEADERS) as http,
    ):
        evil = await http.post("/mcp", json=INITIALIZE, headers={"Host": "evil.example"})
        local = await http.post("/mcp", json=INITIALIZE)
    assert evil.status_code == 421
    assert local.status_code == 200


async def test_allowed_hosts_come_from_the_settings(start_gateway: StartGateway):
    async with (
        start_gateway(mcp_allowed_hosts=["gpu.example.com"]) as running,
        serve_http(running.app) as url,
        httpx.AsyncClient(base_url=url, headers=MCP_HEADERS) as http,
    ):
        named = await http.post("/mcp", json=INITIALIZE, headers={"Host": "gpu.example.com:8443"})
        local = await http.post("/mcp", json=INITIALIZE)
    assert named.status_code == 200
    assert local.status_code == 421


def test_allowed_hosts_parse_from_a_comma_separated_variable(monkeypatch):
    monkeypatch.setenv("GPUBRIDGE_MCP_ALLOWED_HOSTS", "gpu.example.com, 10.0.0.5:8000")
    assert Settings().mcp_allowed_hosts == ["gpu.example.com", "10.0.0.5:8000"]
    security = transport_security(Settings().mcp_allowed_hosts)
    assert security.allowed_hosts == ["gpu.example.com", "gpu.example.com:*", "10.0.0.5:8000"]
    assert "https://gpu.example.com:*" in security.allowed_origins
    assert not transport_security(["*"]).enable_dns_rebinding_protection
