"""``POST /v1/images/generations`` on image-4090: a prompt in, ``{"created", "data": [{"url" |
"b64_json"}]}`` out."""

from __future__ import annotations

import base64
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gpubridge.http_api.openai_door import (
    caller,
    created_of,
    finish,
    invalid,
    model_for,
    read_json,
    submit,
)
from gpubridge.http_api.openai_errors import name_params
from gpubridge.http_api.requests import gateway_of
from gpubridge.http_api.x402 import server_url

IMAGE_SERVICE = "image-4090"
_SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")
IMAGE_IGNORED = frozenset({"user", "quality", "style", "moderation"})
"""Accepted and ignored: the models here have no such settings."""


def image_payload(body: dict[str, Any], model: str | None) -> dict[str, Any]:
    """The image-4090 job input for an images/generations body."""
    payload: dict[str, Any] = {"prompt": body["prompt"]}
    if model is not None:
        payload["model"] = model
    if "n" in body:
        payload["num_outputs"] = body["n"]
    size = body.get("size", "auto")
    if size != "auto":
        match = _SIZE.fullmatch(size) if isinstance(size, str) else None
        if match is None:
            raise invalid("size", "size must be 'auto' or WIDTHxHEIGHT, e.g. 1024x1024")
        payload["width"], payload["height"] = int(match[1]), int(match[2])
    if "output_format" in body:
        payload["output_format"] = body["output_format"]
    return payload


async def generations(request: Request) -> Response:
    account = await caller(request)
    body = await read_json(
        request,
        allowed={"prompt", "model", "n", "size", "response_format", "output_format"},
        required={"prompt"},
        ignored=IMAGE_IGNORED,
    )
    response_format = body.get("response_format", "url")
    if response_format not in ("url", "b64_json"):
        raise invalid("response_format", "response_format must be url or b64_json")
    service = gateway_of(request).catalog.service(IMAGE_SERVICE)
    payload = image_payload(body, model_for(service, body.get("model")))
    name_params(request, {"num_outputs": "n", "width": "size", "height": "size"})
    door = await submit(request, account, IMAGE_SERVICE, payload)
    job = await finish(request, door)
    images = [i for i in (job.output or {}).get("images") or [] if isinstance(i, dict)]
    data = []
    for image in images:
        if response_format == "url":
            data.append({"url": f"{server_url(request)}/files/{image['file_id']}"})
        elif "base64" in image:
            data.append({"b64_json": str(image["base64"])})
        else:
            _, raw = await gateway_of(request).file(str(image["file_id"]))
            data.append({"b64_json": base64.b64encode(raw).decode("ascii")})
    return JSONResponse({"created": created_of(job), "data": data}, headers=door.headers)
