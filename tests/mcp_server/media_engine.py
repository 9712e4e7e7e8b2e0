"""A test double for the media path: an engine answering with a PNG (or WAV) of a chosen size.

Registered under ``MEDIA_BACKEND_TYPE`` in a test's engine registry and served for the
``test-media`` service the test catalog adds; it is not a production engine.
"""

from __future__ import annotations

import base64
from typing import Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
    ModelRef,
    Usage,
)

MEDIA_BACKEND_TYPE = "test-media-double"
MEDIA_SERVICE = "test-media"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WAV_HEADER = b"RIFF\x00\x00\x00\x00WAVE"

MEDIA_SERVICE_ENTRY: dict[str, Any] = {
    "name": "Test media",
    "category": "image",
    "description": "A test double: answers with a PNG or WAV of size_bytes bytes.",
    "mode": "sync",
    "estimated_seconds": 1,
    "price": {"unit": "output", "micros": 3000, "minimum_usd": "0.003"},
    "models": [{"id": "test-media", "source": "test-double"}],
    "input_schema": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "size_bytes": {"type": "integer", "minimum": 16, "maximum": 4_000_000},
            "kind": {"enum": ["image", "audio"], "default": "image"},
        },
    },
    "backends": [{"name": "test-media", "type": MEDIA_BACKEND_TYPE}],
}


def media_bytes(kind: str, size: int) -> bytes:
    header = PNG_SIGNATURE if kind == "image" else WAV_HEADER
    filler = bytes(range(256)) * (size // 256 + 1)
    return header + filler[: size - len(header)]


class MediaEngine:
    def __init__(self, name: str) -> None:
        self.name = name

    async def load(self, model: ModelRef) -> None:
        return None

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        kind = request.input.get("kind", "image")
        data = media_bytes(kind, int(request.input.get("size_bytes", 1024)))
        output = {kind: base64.b64encode(data).decode("ascii"), "seed": 7}
        return EngineResult(output, Usage(outputs=1))

    async def health(self) -> bool:
        return True

    async def unload(self) -> None:
        return None


def create_media_engine(config: BackendConfig, context: EngineContext) -> MediaEngine:
    return MediaEngine(config.name)
