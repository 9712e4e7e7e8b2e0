"""The OpenAPI description of the OpenAI-compatible ``/v1`` routes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gpubridge.catalog import Catalog
from gpubridge.catalog.portable import portable_schema
from gpubridge.http_api.openai_audio import (
    OPENAI_VOICES,
    SPEECH_FORMATS,
    SPEECH_SERVICE,
    TRANSCRIPT_FORMATS,
    TRANSCRIPTION_SERVICE,
)
from gpubridge.http_api.openai_chat import CHAT_IGNORED, CHAT_SERVICE
from gpubridge.http_api.openai_compat import EMBEDDING_SERVICE
from gpubridge.http_api.openai_door import MODEL_ALIASES
from gpubridge.http_api.openai_images import IMAGE_IGNORED, IMAGE_SERVICE
from gpubridge.http_api.openapi_common import (
    error_responses,
    nullable,
    security,
    shared_errors,
)

_ERRORS = {
    "400": "The body is not a JSON object, or a parameter is unknown, missing or unsupported",
    "402": "Insufficient credits or daily limit reached; without an API key while x402 is on, "
    "x402's payment requirements",
    "403": "The x402 payer is refused",
    "404": "Unknown model (code model_not_found)",
    "409": "Idempotency-Key reused with another body",
    "422": "A value the service's input schema refuses",
    "502": "The job failed (refunded)",
    "503": "The service has no backend on this server, or the object store is unreachable",
    "504": "The job did not finish in time (cancelled and refunded)",
}
_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
EMPTY: dict[str, Any] = {
    "description": "Accepted only empty (no such feature here)",
    "anyOf": [
        {"enum": [False, 0, ""]},
        {"type": "array", "maxItems": 0},
        {"type": "object", "maxProperties": 0},
    ],
}
HEADERS: list[dict[str, Any]] = [
    {
        "name": "Idempotency-Key",
        "in": "header",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    {"name": "X-Priority", "in": "header", "schema": {"enum": ["fast", "cheap"]}},
]
"""The headers of a paid request, on ``POST /run`` and the ``/v1`` routes alike."""


def _models(catalog: Catalog, key: str) -> dict[str, Any]:
    service = catalog.services.get(key)
    ids = [m.id for m in service.models] if service is not None else []
    return {"type": "string", "enum": ids + sorted(MODEL_ALIASES.get(key, ()))}


def _field(catalog: Catalog, key: str, name: str, fallback: dict[str, Any]) -> dict[str, Any]:
    """The service's own input schema of a field (its ranges), without its prose."""
    service = catalog.services.get(key)
    found = service.input_schema.get("properties", {}).get(name) if service else None
    if not isinstance(found, dict):
        return fallback
    return {k: v for k, v in portable_schema(found).items() if k not in ("description", "default")}


def _size_pattern(catalog: Catalog) -> str:
    """``auto`` or ``WxH`` with each side one the image service's width and height accept
    (their range and step, spelled out: a pattern cannot do arithmetic)."""

    def side(name: str) -> str:
        schema = _field(catalog, IMAGE_SERVICE, name, {})
        low, high = int(schema.get("minimum", 1)), int(schema.get("maximum", 99_999))
        step = int(schema.get("multipleOf", 1))
        first = -(-low // step) * step
        if high - first > 100_000:
            return "[0-9]{1,5}"
        return "(" + "|".join(str(n) for n in range(first, high + 1, step)) + ")"

    return f"^(auto|{side('width')}x{side('height')})$"


def _op(
    summary: str,
    body: dict[str, Any],
    answer: dict[str, Any],
    *,
    x402: bool,
    body_type: str = "application/json",
    answer_type: str = "application/json",
    stream: bool = False,
) -> dict[str, Any]:
    errors = shared_errors(auth=True, body=True) | _ERRORS
    if not x402:
        errors.pop("403")
    content = {answer_type: {"schema": answer}}
    if stream:
        content["text/event-stream"] = {"schema": {}}
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": content},
        **error_responses(errors, openai=True, x402=x402),
    }
    return {
        "summary": summary,
        "security": security(x402=x402),
        "parameters": HEADERS,
        "requestBody": {"required": True, "content": {body_type: {"schema": body}}},
        "responses": responses,
    }


def _object(
    required: list[str], properties: dict[str, Any], ignored: Iterable[str] = ()
) -> dict[str, Any]:
    """A body with these fields (optional ones may be null) and no others; ``ignored`` ones
    are taken with any value and dropped."""
    fields = {
        name: schema if name in required else nullable(schema)
        for name, schema in properties.items()
    }
    fields |= {name: {} for name in ignored}
    return {
        "type": "object",
        "required": required,
        "properties": fields,
        "additionalProperties": False,
    }


def openai_paths(catalog: Catalog, *, x402: bool) -> dict[str, Any]:
    """``paths`` entries of the ``/v1`` routes (job id in the ``X-Gpubridge-Job-Id`` header)."""
    text_part = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    }
    messages = {
        "type": "array",
        "minItems": 1,
        "maxItems": 512,
        "items": {
            "type": "object",
            "required": ["role"],
            "properties": {
                "role": {"enum": ["system", "developer", "user", "assistant"]},
                "content": {
                    "anyOf": [
                        {"type": "string", "maxLength": 200_000},
                        {"type": "array", "items": text_part},
                        {"type": "null"},
                    ]
                },
                "tool_calls": nullable({"type": "array", "maxItems": 0}),
            },
        },
    }

    def chat(name: str, fallback: dict[str, Any]) -> dict[str, Any]:
        return _field(catalog, CHAT_SERVICE, name, fallback)

    def transcription(task: str) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "file": {"type": "string", "format": "binary"},
            "model": _models(catalog, TRANSCRIPTION_SERVICE),
            "prompt": _field(catalog, TRANSCRIPTION_SERVICE, "prompt", {"type": "string"}),
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "response_format": {"enum": sorted(TRANSCRIPT_FORMATS)},
            "timestamp_granularities[]": {
                "type": "array",
                "minItems": 1,
                "items": {"enum": ["word", "segment"]},
                "description": "Used with response_format verbose_json; ignored otherwise.",
            },
            "stream": {"enum": ["false", "False"]},
        }
        if task == "transcribe":
            properties["language"] = _field(
                catalog, TRANSCRIPTION_SERVICE, "language", {"type": "string"}
            )
        return {
            "type": "object",
            "required": ["file"],
            "properties": properties,
            "additionalProperties": False,
        }

    text_or_json: dict[str, Any] = {"oneOf": [{"type": "object"}, {"type": "string"}]}
    not_found = error_responses({"404": "Unknown model (code model_not_found)"}, openai=True)
    limited = error_responses(shared_errors(), openai=True)
    return {
        "/v1/models": {
            "get": {
                "summary": "The models of the /v1 routes (OpenAI list shape)",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **limited,
                },
            }
        },
        "/v1/models/{model_id}": {
            "get": {
                "summary": "One model",
                "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {}}],
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **not_found,
                    **limited,
                },
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
                        "max_tokens": chat("max_tokens", {"type": "integer"}),
                        "max_completion_tokens": chat("max_tokens", {"type": "integer"}),
                        "temperature": chat("temperature", {"type": "number"}),
                        "top_p": chat("top_p", {"type": "number"}),
                        "stop": chat("stop", {"anyOf": [{"type": "string"}, {"type": "array"}]}),
                        "seed": chat("seed", {"type": "integer"}),
                        "stream": {"type": "boolean"},
                        "stream_options": {
                            "anyOf": [
                                {
                                    "type": "object",
                                    "properties": {"include_usage": {"type": "boolean"}},
                                },
                                EMPTY,
                            ]
                        },
                        # Accepted at their default value only.
                        "n": {"const": 1},
                        "logprobs": {"const": False},
                        "top_logprobs": {"const": 0},
                        "presence_penalty": {"const": 0},
                        "frequency_penalty": {"const": 0},
                        "logit_bias": EMPTY,
                        "response_format": {
                            "type": "object",
                            "required": ["type"],
                            "properties": {"type": {"const": "text"}},
                        },
                        "tools": EMPTY,
                        "functions": EMPTY,
                        "tool_choice": {"const": "none"},
                        "function_call": {"const": "none"},
                    },
                    CHAT_IGNORED,
                ),
                {"type": "object", "description": "chat.completion"},
                x402=x402,
                stream=True,
            )
        },
        "/v1/embeddings": {
            "post": _op(
                f"Embeddings on {EMBEDDING_SERVICE}",
                _object(
                    ["input"],
                    {
                        "model": _models(catalog, EMBEDDING_SERVICE),
                        "input": _field(
                            catalog,
                            EMBEDDING_SERVICE,
                            "text",
                            {"oneOf": [{"type": "string"}, _STRINGS]},
                        ),
                        "encoding_format": {"enum": ["float", "base64"]},
                    },
                    ["user"],
                ),
                {"type": "object", "description": "list of embedding objects"},
                x402=x402,
            )
        },
        "/v1/audio/transcriptions": {
            "post": _op(
                f"Speech to text on {TRANSCRIPTION_SERVICE} from an uploaded file",
                transcription("transcribe"),
                text_or_json,
                x402=x402,
                body_type="multipart/form-data",
            )
        },
        "/v1/audio/translations": {
            "post": _op(
                f"Speech to English text on {TRANSCRIPTION_SERVICE} from an uploaded file "
                "(the language is detected; there is no language field)",
                transcription("translate"),
                text_or_json,
                x402=x402,
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
                        "input": _field(catalog, SPEECH_SERVICE, "text", {"type": "string"}),
                        "voice": {
                            "description": "An OpenAI voice name or a Kokoro voice",
                            "enum": sorted(OPENAI_VOICES)
                            + _field(catalog, SPEECH_SERVICE, "voice", {}).get("enum", []),
                        },
                        "response_format": {"enum": sorted(SPEECH_FORMATS)},
                        "speed": _field(catalog, SPEECH_SERVICE, "speed", {"type": "number"}),
                        "instructions": {"const": ""},
                        "stream_format": {"const": "audio"},
                    },
                ),
                {"type": "string", "format": "binary"},
                x402=x402,
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
                        "prompt": _field(catalog, IMAGE_SERVICE, "prompt", {"type": "string"}),
                        "n": _field(catalog, IMAGE_SERVICE, "num_outputs", {"type": "integer"}),
                        "size": {"type": "string", "pattern": _size_pattern(catalog)},
                        "response_format": {"enum": ["url", "b64_json"]},
                        "output_format": {"enum": ["png", "jpeg", "webp"]},
                    },
                    IMAGE_IGNORED,
                ),
                {"type": "object", "description": '{"created", "data": [{"url"|"b64_json"}]}'},
                x402=x402,
            )
        },
    }
