"""The OpenAPI description of the OpenAI-compatible ``/v1`` routes."""

from __future__ import annotations

from typing import Any

from gpubridge.catalog import Catalog
from gpubridge.http_api.openai_audio import (
    OPENAI_VOICES,
    SPEECH_FORMATS,
    SPEECH_SERVICE,
    TRANSCRIPT_FORMATS,
    TRANSCRIPTION_SERVICE,
)
from gpubridge.http_api.openai_chat import CHAT_SERVICE
from gpubridge.http_api.openai_compat import EMBEDDING_SERVICE
from gpubridge.http_api.openai_door import MODEL_ALIASES
from gpubridge.http_api.openai_images import IMAGE_SERVICE

OPENAI_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code", "param"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}
_ERR = {"$ref": "#/components/schemas/OpenAIError"}
_ERRORS = {
    "400": "Unknown or unsupported parameter",
    "401": "Invalid API key, or no API key while x402 is off",
    "402": "No API key while x402 is on: x402 payment requirements; or insufficient credits",
    "404": "Unknown model (code model_not_found)",
    "422": "A value the service's input schema refuses",
    "429": "Rate limited",
    "502": "The job failed (refunded)",
    "504": "The job did not finish in time (cancelled and refunded)",
}
_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}


def _models(catalog: Catalog, key: str) -> dict[str, Any]:
    service = catalog.services.get(key)
    ids = [m.id for m in service.models] if service is not None else []
    return {"type": "string", "enum": ids + sorted(MODEL_ALIASES.get(key, ()))}


def _op(
    summary: str,
    body: dict[str, Any],
    answer: dict[str, Any],
    *,
    body_type: str = "application/json",
    answer_type: str = "application/json",
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {answer_type: {"schema": answer}}}
    }
    for code, text in _ERRORS.items():
        responses[code] = {"description": text, "content": {"application/json": {"schema": _ERR}}}
    return {
        "summary": summary,
        "security": [{"apiKey": []}],
        "parameters": [
            {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
            {"name": "X-Priority", "in": "header", "schema": {"enum": ["fast", "cheap"]}},
        ],
        "requestBody": {"required": True, "content": {body_type: {"schema": body}}},
        "responses": responses,
    }


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def openai_paths(catalog: Catalog) -> dict[str, Any]:
    """``paths`` entries of the ``/v1`` routes (job id in the ``X-Gpubridge-Job-Id`` header)."""
    messages = {
        "type": "array",
        "items": _object(
            ["role"],
            {
                "role": {"enum": ["system", "developer", "user", "assistant"]},
                "content": {"type": ["string", "array", "null"]},
            },
        ),
    }
    transcription = _object(
        ["file"],
        {
            "file": {"type": "string", "format": "binary"},
            "model": _models(catalog, TRANSCRIPTION_SERVICE),
            "language": {"type": "string"},
            "prompt": {"type": "string"},
            "temperature": {"type": "number"},
            "response_format": {"enum": sorted(TRANSCRIPT_FORMATS)},
            "timestamp_granularities[]": {
                "type": "array",
                "items": {"enum": ["word", "segment"]},
            },
        },
    )
    text_or_json: dict[str, Any] = {"oneOf": [{"type": "object"}, {"type": "string"}]}
    return {
        "/v1/models": {"get": {"summary": "The models of the /v1 routes (OpenAI list shape)"}},
        "/v1/models/{model_id}": {
            "get": {
                "summary": "One model",
                "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {}}],
            }
        },
        "/v1/chat/completions": {
            "post": _op(
                f"Chat completion on {CHAT_SERVICE}; stream=true answers chat.completion.chunk "
                "server-sent events ending with [DONE]",
                _object(
                    ["messages"],
                    {
                        "model": _models(catalog, CHAT_SERVICE),
                        "messages": messages,
                        "max_tokens": {"type": "integer"},
                        "max_completion_tokens": {"type": "integer"},
                        "temperature": {"type": "number"},
                        "top_p": {"type": "number"},
                        "stop": {"type": ["string", "array"]},
                        "seed": {"type": "integer"},
                        "stream": {"type": "boolean"},
                        "stream_options": {"type": "object"},
                    },
                ),
                {"type": "object", "description": "chat.completion"},
            )
        },
        "/v1/embeddings": {
            "post": _op(
                f"Embeddings on {EMBEDDING_SERVICE}",
                _object(
                    ["input"],
                    {
                        "model": _models(catalog, EMBEDDING_SERVICE),
                        "input": {"oneOf": [{"type": "string"}, _STRINGS]},
                        "encoding_format": {"enum": ["float", "base64"]},
                    },
                ),
                {"type": "object", "description": "list of embedding objects"},
            )
        },
        "/v1/audio/transcriptions": {
            "post": _op(
                f"Speech to text on {TRANSCRIPTION_SERVICE} from an uploaded file",
                transcription,
                text_or_json,
                body_type="multipart/form-data",
            )
        },
        "/v1/audio/translations": {
            "post": _op(
                f"Speech to English text on {TRANSCRIPTION_SERVICE} from an uploaded file",
                transcription,
                text_or_json,
                body_type="multipart/form-data",
            )
        },
        "/v1/audio/speech": {
            "post": _op(
                f"Text to speech on {SPEECH_SERVICE}: the audio bytes",
                _object(
                    ["input"],
                    {
                        "model": _models(catalog, SPEECH_SERVICE),
                        "input": {"type": "string"},
                        "voice": {
                            "type": "string",
                            "description": "An OpenAI voice name "
                            f"({', '.join(sorted(OPENAI_VOICES))}) or a Kokoro voice",
                        },
                        "response_format": {"enum": sorted(SPEECH_FORMATS)},
                        "speed": {"type": "number"},
                    },
                ),
                {"type": "string", "format": "binary"},
                answer_type="audio/*",
            )
        },
        "/v1/images/generations": {
            "post": _op(
                f"Images on {IMAGE_SERVICE}",
                _object(
                    ["prompt"],
                    {
                        "model": _models(catalog, IMAGE_SERVICE),
                        "prompt": {"type": "string"},
                        "n": {"type": "integer"},
                        "size": {"type": "string", "pattern": "^(auto|[0-9]+x[0-9]+)$"},
                        "response_format": {"enum": ["url", "b64_json"]},
                        "output_format": {"enum": ["png", "jpeg", "webp"]},
                    },
                ),
                {"type": "object", "description": '{"created", "data": [{"url"|"b64_json"}]}'},
            )
        },
    }
