"""OpenAI-compatible routes (``/v1/...``): thin doors onto the same gateway use cases, jobs and
ledger as ``POST /run``. This module mounts them and has the models list and embeddings; chat,
audio and images live beside it."""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gpubridge.catalog import Catalog
from gpubridge.catalog.availability import ServiceReport
from gpubridge.errors import NotFound
from gpubridge.gateway.views import availability_fields
from gpubridge.http_api import openai_audio, openai_chat, openai_images
from gpubridge.http_api.openai_door import (
    caller,
    finish,
    invalid,
    model_for,
    read_json,
    submit,
    unsupported,
)
from gpubridge.http_api.openai_errors import name_params
from gpubridge.http_api.requests import gateway_of

EMBEDDING_SERVICE = "embedding-l4"
OPENAI_SERVICES = (
    openai_chat.CHAT_SERVICE,
    EMBEDDING_SERVICE,
    openai_audio.TRANSCRIPTION_SERVICE,
    openai_audio.SPEECH_SERVICE,
    openai_images.IMAGE_SERVICE,
)


# -- models -------------------------------------------------------------------------------------
def model_list(catalog: Catalog, reports: Mapping[str, ServiceReport]) -> list[dict[str, Any]]:
    """The catalog's models of the services these routes serve, in OpenAI's model shape, with
    whether each can run on this server now (``reports``) and why not."""
    listed: dict[str, dict[str, Any]] = {}
    for key in OPENAI_SERVICES:
        service = catalog.services.get(key)
        if service is None:
            continue
        for model in service.models:
            verdict = reports[key].models[model.id]
            listed.setdefault(
                model.id,
                {
                    "id": model.id,
                    "object": "model",
                    "created": 0,
                    "owned_by": "gpubridge",
                    "service": key,
                    "default": model is service.default_model,
                    **availability_fields(verdict, "unavailable_reason"),
                },
            )
    return list(listed.values())


async def list_models(request: Request) -> Response:
    gateway = gateway_of(request)
    models = model_list(gateway.catalog, await gateway.availability.reports())
    return JSONResponse({"object": "list", "data": models})


async def get_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    gateway = gateway_of(request)
    for model in model_list(gateway.catalog, await gateway.availability.reports()):
        if model["id"] == model_id:
            return JSONResponse(model)
    raise NotFound(f"The model `{model_id}` does not exist on this server", code="model_not_found")


# -- embeddings ---------------------------------------------------------------------------------
def _vector(values: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")
    return values


async def embeddings(request: Request) -> Response:
    account = await caller(request)
    body = await read_json(
        request,
        allowed={"input", "model", "encoding_format", "dimensions"},
        required={"input"},
        ignored=frozenset({"user"}),
    )
    text = body["input"]
    if isinstance(text, list) and any(not isinstance(t, str) for t in text):
        raise unsupported("input", "token arrays are not supported; send strings")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise invalid("encoding_format", "encoding_format must be float or base64")
    if "dimensions" in body:
        raise unsupported("dimensions", "dimensions is not supported: each model has its own")
    service = gateway_of(request).catalog.service(EMBEDDING_SERVICE)
    payload: dict[str, Any] = {"text": text}
    model = model_for(service, body.get("model"))
    if model is not None:
        payload["model"] = model
    name_params(request, {"text": "input"})
    door = await submit(request, account, EMBEDDING_SERVICE, payload)
    job = await finish(request, door)
    output = job.output or {}
    vectors = output["embeddings"] if isinstance(text, list) else [output["embedding"]]
    tokens = int((job.usage or {}).get("prompt_tokens") or 0)
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _vector(v, encoding)}
                for i, v in enumerate(vectors)
            ],
            "model": job.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        headers=door.headers,
    )


def openai_routes() -> list[BaseRoute]:
    """The ``/v1`` routes, mounted beside the native API."""
    return [
        Route("/v1/models", list_models),
        Route("/v1/models/{model_id:path}", get_model),
        Route("/v1/chat/completions", openai_chat.chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/audio/transcriptions", openai_audio.transcriptions, methods=["POST"]),
        Route("/v1/audio/translations", openai_audio.translations, methods=["POST"]),
        Route("/v1/audio/speech", openai_audio.speech, methods=["POST"]),
        Route("/v1/images/generations", openai_images.generations, methods=["POST"]),
    ]
