"""The OpenAPI entries of the discovery routes: ``/llms.txt`` and ``/.well-known/x402``."""

from __future__ import annotations

from typing import Any

from gpubridge.http_api.openapi_common import error_responses, shared_errors

X402_DISCOVERY: dict[str, Any] = {
    "type": "object",
    "required": ["version", "resources", "x402Version", "items"],
    "properties": {
        "version": {"type": "integer", "description": "The well-known document's version"},
        "resources": {
            "type": "array",
            "items": {"type": "string", "format": "uri"},
            "description": "The URLs that answer 402",
        },
        "instructions": {"type": "string"},
        "x402Version": {"type": "integer"},
        "items": {
            "type": "array",
            "description": "One discovery resource per service (the x402 SDK's "
            "DiscoveryResource): requirements, Bazaar extension and prices",
            "items": {
                "type": "object",
                "required": ["resource", "type", "x402Version", "accepts"],
                "properties": {
                    "resource": {"type": "string"},
                    "type": {"type": "string"},
                    "x402Version": {"type": "integer"},
                    "accepts": {"type": "array", "items": {"type": "object"}},
                    "extensions": {"type": "object"},
                    "pricing": {"type": "object"},
                },
            },
        },
        "pagination": {"type": "object"},
    },
}
X402_OFF = "x402 is off on this server: it has no paid resources (code x402_disabled)"


def discovery_paths() -> dict[str, Any]:
    limited = shared_errors()
    return {
        "/llms.txt": {
            "get": {
                "summary": "The API described for LLM agents (llms.txt, generated from the "
                "catalog)",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **error_responses(limited),
                },
            }
        },
        "/.well-known/x402": {
            "get": {
                "summary": "x402 discovery: the paid resources, one item per service with its "
                "payment requirements, input schema and example (the Bazaar extension)",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": X402_DISCOVERY}},
                    },
                    **error_responses({**limited, "404": X402_OFF}),
                },
            }
        },
    }
