"""The --remote proxy in process: what it forwards, and a remote that does not answer."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from gpubridge.errors import ServiceUnavailable
from gpubridge.mcp_server.remote import build_proxy, mcp_endpoint, serve_remote
from tests.mcp_server.conftest import LLM_CALL, StartGateway, http_client, serve_http
from tests.support.openai_upstream import closed_port


async def test_the_proxy_forwards_payment_meta_and_unpaid_answers(start_gateway: StartGateway):
    async with (
        start_gateway(x402_enabled=False) as running,
        serve_http(running.app) as url,
        http_client(url, None) as remote,
        Client(build_proxy(remote, url)) as client,
    ):
        with anyio.fail_after(30):
            unpaid = await client.call_tool("llm-4090", LLM_CALL)
            paying = await client.call_tool(
                "llm-4090", LLM_CALL, meta={"x402/payment": {"x402Version": 2}}
            )
            estimate = await client.call_tool("estimate_cost", {"service": "llm-4090"})
    assert unpaid.is_error
    assert unpaid.structured_content["error"]["code"] == "payment_required"
    assert "x402 payments are off" in paying.structured_content["error"]["message"]
    assert estimate.structured_content["service"] == "llm-4090"


async def test_an_unreachable_remote_is_a_clear_error():
    with anyio.fail_after(30), pytest.raises(ServiceUnavailable, match="cannot reach"):
        await serve_remote(f"http://127.0.0.1:{closed_port()}", "gpub_key")


def test_a_bare_server_url_means_its_mcp_endpoint():
    assert mcp_endpoint("https://gpu.example.com") == "https://gpu.example.com/mcp"
    assert mcp_endpoint("https://gpu.example.com/") == "https://gpu.example.com/mcp"
    assert mcp_endpoint("https://gpu.example.com/x/mcp") == "https://gpu.example.com/x/mcp"
