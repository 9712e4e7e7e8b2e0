"""``gpubridge mcp`` as a subprocess, driven by the SDK's stdio client: local and --remote."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from gpubridge.app import build_components, prepare_database
from gpubridge.db.migrate import upgrade_to_head
from tests.mcp_server.conftest import (
    FUNDS_MICROS,
    LLM_CALL,
    StartGateway,
    catalog_edit,
    serve_http,
)
from tests.mcp_server.test_progress import Recorder
from tests.support.gateway_app import settings_for, write_catalog

REPO = Path(__file__).resolve().parents[2]
EMAIL = "desktop@example.com"
STDIO_TIMEOUT_S = 60


def gpubridge_mcp(*args: str, **settings: str) -> StdioServerParameters:
    """``python -m gpubridge mcp ARGS`` with only the given GPUBRIDGE_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUBRIDGE_")}
    env.update({f"GPUBRIDGE_{name.upper()}": value for name, value in settings.items()})
    return StdioServerParameters(
        command=sys.executable, args=["-m", "gpubridge", "mcp", *args], env=env, cwd=REPO
    )


async def test_stdio_serves_the_catalog_and_bills_the_configured_key(tmp_path, upstream):
    upstream.behaviour.delay_s = 0.3
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'stdio.db'}"
    catalog = write_catalog(tmp_path / "catalog.yaml", catalog_edit(upstream.base_url))
    settings = settings_for(database_url, tmp_path, catalog, auto_migrate=True)
    components = build_components(settings)
    try:
        await prepare_database(components)
        key = (await components.gateway.accounts.register(EMAIL)).api_key
        await components.gateway.grant(EMAIL, FUNDS_MICROS)
    finally:
        await components.close()

    server = gpubridge_mcp(
        database_url=database_url,
        catalog=str(catalog),
        api_key=key,
        allow_private_urls="true",
        data_dir=str(tmp_path / "data"),
        dispatcher_poll_s="0.05",
    )
    recorder = Recorder()
    with anyio.fail_after(STDIO_TIMEOUT_S):
        async with Client(server) as client:
            tools = (await client.list_tools()).tools
            result = await client.call_tool("llm-4090", LLM_CALL, progress_callback=recorder)

    assert len(tools) == 27 + 3
    assert not result.is_error, result.content
    assert result.structured_content["output"]["text"] == "Hello, world!"
    assert "running" in recorder.messages
    components = build_components(settings)
    try:
        account = await components.gateway.accounts.by_email(EMAIL)
        balance = await components.gateway.balance(account)
    finally:
        await components.close()
    cost = round(result.structured_content["cost_usd"] * 1_000_000)
    assert round(balance["balance"] * 1_000_000) == FUNDS_MICROS - cost > 0


async def test_remote_mode_proxies_a_remote_gpubridge_over_http(
    start_gateway: StartGateway, upstream
):
    upstream.behaviour.delay_s = 0.3
    async with start_gateway(media=False) as running, serve_http(running.app) as url:
        key = await running.funded_key()
        recorder = Recorder()
        with anyio.fail_after(STDIO_TIMEOUT_S):
            async with Client(gpubridge_mcp("--remote", url, api_key=key)) as client:
                tools = (await client.list_tools()).tools
                result = await client.call_tool("llm-4090", LLM_CALL, progress_callback=recorder)
                catalog = await client.read_resource("gpubridge://catalog")
        assert {tool.name for tool in tools} == set(running.gateway.catalog.services) | {
            "get_job",
            "cancel_job",
            "estimate_cost",
        }
        assert not result.is_error, result.content
        assert result.structured_content["status_url"].startswith(url)
        assert "running" in recorder.messages
        assert '"llm-4090"' in catalog.contents[0].text  # type: ignore[union-attr]
        cost = round(result.structured_content["cost_usd"] * 1_000_000)
        assert await running.balance_micros(key) == FUNDS_MICROS - cost


async def default_models(server: StdioServerParameters) -> dict[str, str]:
    """The default model of each service in the catalog resource ``server`` serves."""
    with anyio.fail_after(STDIO_TIMEOUT_S):
        async with Client(server) as client:
            catalog = await client.read_resource("gpubridge://catalog")
    document = json.loads(catalog.contents[0].text)  # type: ignore[union-attr]
    return {
        service["key"]: next(m["id"] for m in service["models"] if m["default"])
        for service in document["services"]
    }


async def test_stdio_runs_the_catalog_that_serve_runs_starter_profile_included(tmp_path):
    data_dir = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{data_dir / 'gpubridge.db'}"
    await anyio.to_thread.run_sync(upgrade_to_head, url)  # it runs its own event loop

    served = await default_models(gpubridge_mcp(data_dir=str(data_dir)))
    assert served["llm-4090"] == "smollm2-135m-instruct"
    assert served["embedding-l4"] == "all-minilm-l6-v2"
    assert served["whisper-l4"] == "whisper-tiny-en"

    off = await default_models(gpubridge_mcp("--no-starter", data_dir=str(data_dir)))
    assert off["llm-4090"] == "llama-3.3-70b-versatile"
    assert off["embedding-l4"] == "bge-large-en-v1.5"
