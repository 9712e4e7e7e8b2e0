"""The discovery routes in the OpenAPI document."""

from __future__ import annotations

from gpubridge.catalog import Catalog
from gpubridge.http_api.openapi import openapi_document


def test_the_discovery_routes_are_documented():
    paths = openapi_document(Catalog.load(), x402=True)["paths"]

    llms = paths["/llms.txt"]["get"]["responses"]
    assert list(llms["200"]["content"]) == ["text/plain"]
    well_known = paths["/.well-known/x402"]["get"]["responses"]
    assert {"200", "404", "429"} <= set(well_known)
    schema = well_known["200"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["version", "resources", "x402Version", "items"]
