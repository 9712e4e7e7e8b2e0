"""The x402 Bazaar description of the OpenAI-compatible routes: the request body each takes
(its schema from the OpenAPI document, so the two cannot disagree) and an example of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpubridge.catalog import Catalog, Service
from gpubridge.gateway.discovery import EXAMPLE_TEXT, Describe
from gpubridge.http_api.openai_openapi import openai_paths
from gpubridge.payments.x402.bazaar import http_extension

EXAMPLE_BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": EXAMPLE_TEXT}]},
    "/v1/embeddings": {"input": EXAMPLE_TEXT},
    "/v1/audio/speech": {"input": EXAMPLE_TEXT},
    "/v1/images/generations": {"prompt": EXAMPLE_TEXT},
    "/v1/audio/transcriptions": {"file": "speech.mp3"},
    "/v1/audio/translations": {"file": "speech.mp3"},
}
"""A small request of each paid route (a multipart upload shows its file by name)."""
BODY_TYPES = {"application/json": "json", "multipart/form-data": "form-data"}


def openai_extension(catalog: Catalog, path: str) -> dict[str, Any]:
    """The Bazaar description of the paid OpenAI-compatible route at ``path``."""
    content: dict[str, Any] = openai_paths(catalog, x402=True)[path]["post"]["requestBody"][
        "content"
    ]
    media_type, body = next(iter(content.items()))
    return http_extension(
        method="POST",
        body=EXAMPLE_BODIES[path],
        body_schema=body["schema"],
        body_type=BODY_TYPES[media_type],
    )


def openai_describer(catalog: Catalog, path: str) -> Describe:
    """``openai_extension`` for ``path``, whichever service the route runs."""

    def describe(service: Service) -> Mapping[str, Any]:
        return openai_extension(catalog, path)

    return describe
