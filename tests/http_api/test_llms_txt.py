"""/llms.txt: the API for LLM agents, generated from the catalog and the payment settings."""

from __future__ import annotations

import json
import re
from typing import Any

from gpubridge.catalog import Catalog
from gpubridge.gateway.views import price_text
from tests.support.gateway_app import TEST_RECIPIENT, running_app, settings_for, write_catalog

SERVER = "https://gpu.example.com"
LINK = re.compile(r"^- \[(?P<name>[^\]]+)\]\((?P<url>[^)]+)\): (?P<notes>.+)$")


def service_lines(text: str) -> dict[str, str]:
    """The service entries, by key: ``- [Name (`key`)](url): notes``."""
    found = {}
    for line in text.splitlines():
        match = LINK.match(line)
        key = re.search(r"\(`([^`]+)`\)$", match["name"]) if match else None
        if match and key:
            found[key[1]] = line
    return found


async def test_llms_txt_follows_the_convention_and_lists_every_service(
    database, database_url, tmp_path
):
    catalog_file = write_catalog(tmp_path / "catalog.yaml")
    settings = settings_for(database_url, tmp_path, catalog_file, public_url=SERVER)
    async with running_app(settings) as (_, client):
        response = await client.get("/llms.txt")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    text = response.text
    lines = text.splitlines()
    assert lines[0] == "# gpubridge"
    assert lines[2].startswith("> 26 AI services")
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == [
        "## How to call",
        "## Text services",
        "## Image and video services",
        "## Audio services",
        "## Utility services",
        "## Docs",
        "## Optional",
    ]
    for route in ("/run", "/mcp", "/v1/chat/completions", "/catalog/estimate"):
        assert f"{SERVER}{route}" in text or f" {route}`" in text, route
    assert f"paid to `{TEST_RECIPIENT}`" in text
    assert f"[x402 discovery]({SERVER}/.well-known/x402)" in text
    for extension in ("`sign-in-with-x`", "`payment-identifier`", "`settlement_pending`"):
        assert extension in text
    catalog = Catalog.load()
    entries = service_lines(text)
    assert list(entries) == [
        key
        for category in ("text", "image", "audio", "utility")
        for key, service in catalog.services.items()
        if service.category == category
    ]
    for key, line in entries.items():
        service = catalog.services[key]
        assert f"[{service.name} (`{key}`)]({SERVER}/catalog/estimate?service={key})" in line
        assert price_text(service.price) in line
        example = json.loads(line.split("Example: `", 1)[1].removesuffix("`"))
        assert example["service"] == key
        catalog.validate_input(service, example["input"])


async def test_llms_txt_follows_the_operators_catalog(database, database_url, tmp_path):
    def edit(data: dict[str, Any]) -> None:
        data["services"]["caption"]["price"]["minimum_usd"] = "0.07"
        data["services"]["caption"]["backends"] = []
        data["services"]["caption"]["description"] = "Say what is in a picture."

    catalog_file = write_catalog(tmp_path / "catalog.yaml", edit)
    settings = settings_for(database_url, tmp_path, catalog_file)
    async with running_app(settings) as (_, client):
        text = (await client.get("/llms.txt")).text

    caption = service_lines(text)["caption"]
    assert "Say what is in a picture." in caption
    assert "from $0.07" in caption
    assert caption.endswith("Not available on this server right now (no backend configured).")
    assert "http://gpubridge.test/run" in text
