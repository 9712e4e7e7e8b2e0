"""``POST /v1/chat/completions`` on llm-4090: OpenAI messages in, a ``chat.completion`` out, or
``chat.completion.chunk`` server-sent events from the job's token stream."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gpubridge.errors import Conflict
from gpubridge.http_api.openai_door import (
    Door,
    caller,
    created_of,
    finish,
    invalid,
    job_error,
    model_for,
    read_json,
    submit,
    unsupported,
)
from gpubridge.http_api.openai_errors import error_type
from gpubridge.http_api.requests import gateway_of
from gpubridge.jobs.status import JobStatus
from gpubridge.jobs.store import JobRecord

CHAT_SERVICE = "llm-4090"
FINISH_REASONS = {"stop", "length", "content_filter", "tool_calls"}

_CHAT_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "stream",
    "stream_options",
}
CHAT_IGNORED = frozenset(
    {"user", "store", "metadata", "service_tier", "parallel_tool_calls", "safety_identifier"}
)


def _number_is(default: int) -> Callable[[Any], bool]:
    """Whether a value is this number (``true`` is not 1 here, as it is not at OpenAI)."""
    return lambda v: not isinstance(v, bool) and isinstance(v, int | float) and v == default


_DEFAULT_ONLY: dict[str, Callable[[Any], bool]] = {
    "n": _number_is(1),
    "logprobs": lambda v: v is False,
    "top_logprobs": _number_is(0),
    "presence_penalty": _number_is(0),
    "frequency_penalty": _number_is(0),
    "logit_bias": lambda v: not v,
    "response_format": lambda v: isinstance(v, dict) and v.get("type") == "text",
    "tools": lambda v: not v,
    "functions": lambda v: not v,
    "tool_choice": lambda v: v == "none",
    "function_call": lambda v: v == "none",
}
"""Parameters accepted only at their default value (the runtimes have no such feature)."""
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def chat_messages(value: Any) -> list[dict[str, str]]:
    """OpenAI messages as the catalog's ``{role, content}`` text messages."""
    if not isinstance(value, list):
        raise invalid("messages", "messages must be a list")
    messages = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise invalid("messages", f"messages[{i}] must be an object")
        role = _ROLES.get(str(message.get("role")))
        if role is None:
            raise unsupported(
                "messages",
                f"messages[{i}].role {message.get('role')!r} is not supported "
                "(system, developer, user, assistant)",
            )
        if message.get("tool_calls") or message.get("function_call"):
            raise unsupported("messages", f"messages[{i}]: tool calls are not supported")
        if not isinstance(message.get("tool_calls", []), list | None):
            raise invalid("messages", f"messages[{i}].tool_calls must be a list")
        messages.append({"role": role, "content": _text(message.get("content"), i)})
    return messages


def _text(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise invalid("messages", f"messages[{index}].content must be a string or a list")
    parts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            raise unsupported("messages", f"messages[{index}]: only text content is supported")
        text = part.get("text", "")
        if not isinstance(text, str):
            raise invalid("messages", f"messages[{index}]: a text part's text must be a string")
        parts.append(text)
    return "".join(parts)


def chat_payload(body: dict[str, Any], model: str | None) -> dict[str, Any]:
    """The llm-4090 job input for a chat completions body."""
    for name, is_default in _DEFAULT_ONLY.items():
        if name in body and not is_default(body[name]):
            raise unsupported(name, f"{name} is not supported here (only its default value)")
    payload: dict[str, Any] = {"messages": chat_messages(body["messages"])}
    if model is not None:
        payload["model"] = model
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    for name in ("temperature", "top_p", "stop", "seed"):
        if name in body:
            payload[name] = body[name]
    if body.get("stream") is True:
        payload["stream"] = True
    return payload


def chat_usage(job: JobRecord) -> dict[str, int]:
    usage = job.usage or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def finish_reason(output: dict[str, Any]) -> str:
    reason = output.get("finish_reason")
    return reason if reason in FINISH_REASONS else "stop"


def chat_completion(job: JobRecord) -> dict[str, Any]:
    """A completed llm-4090 job as a ``chat.completion`` object."""
    output = job.output or {}
    message = {"role": "assistant", "content": str(output.get("text", "")), "refusal": None}
    return {
        "id": f"chatcmpl-{job.id}",
        "object": "chat.completion",
        "created": created_of(job),
        "model": job.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(output),
            }
        ],
        "usage": chat_usage(job),
        "system_fingerprint": None,
    }


async def chat_completions(request: Request) -> Response:
    account = await caller(request)
    fields = _CHAT_FIELDS | set(_DEFAULT_ONLY)
    body = await read_json(request, allowed=fields, required={"messages"}, ignored=CHAT_IGNORED)
    service = gateway_of(request).catalog.service(CHAT_SERVICE)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid("stream", "stream must be a boolean")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise invalid("stream_options", "stream_options must be {'include_usage': bool}")
    payload = chat_payload(body, model_for(service, body.get("model")))
    if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
        # max_completion_tokens wins; the max_tokens it overrides must still be a valid one.
        gateway_of(request).catalog.validate_input(
            service, {**payload, "max_tokens": body["max_tokens"]}
        )
    door = await submit(request, account, CHAT_SERVICE, payload)
    if stream:
        return await stream_chat(request, door, include_usage=options.get("include_usage", False))
    job = await finish(request, door)
    return JSONResponse(chat_completion(job), headers=door.headers)


# -- streaming ----------------------------------------------------------------------------------
async def stream_chat(request: Request, door: Door, *, include_usage: bool) -> Response:
    """Server-sent ``chat.completion.chunk`` events of the job, ending with ``[DONE]``."""
    events = gateway_of(request).stream(door.job.id)
    # The first step subscribes to the job's events. Nothing has been awaited since the job was
    # created, so its task has not run yet and no token can have gone out before this.
    first = await anext(events)
    chunks = _chunks(request, door, _prepend(first, events), include_usage)
    from sse_starlette.sse import EventSourceResponse  # loaded by the first stream

    return EventSourceResponse(chunks, headers=door.headers, ping=15)


async def _prepend(
    first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]
) -> AsyncGenerator[dict[str, Any]]:
    yield first
    try:
        async for item in rest:
            yield item
    finally:
        if isinstance(rest, AsyncGenerator):
            await rest.aclose()  # unsubscribes at once when the client goes away


async def _chunks(
    request: Request, door: Door, events: AsyncGenerator[dict[str, Any]], include_usage: bool
) -> AsyncIterator[dict[str, str]]:
    gateway = gateway_of(request)
    try:
        async with aclosing(_stream(request, door, events, include_usage)) as stream:
            async for item in stream:
                yield item
    finally:
        # The client went away before the end (the response's task is cancelled and closes
        # this generator): its job stops and is refunded, unless it has already ended.
        with anyio.CancelScope(shield=True):
            job = await gateway.get(door.job.id)
            if not job.status.is_terminal:
                await gateway.abandon(door.account, job.id)


async def _stream(
    request: Request, door: Door, events: AsyncGenerator[dict[str, Any]], include_usage: bool
) -> AsyncGenerator[dict[str, str]]:
    gateway = gateway_of(request)
    job = door.job
    base = {
        "id": f"chatcmpl-{job.id}",
        "object": "chat.completion.chunk",
        "created": created_of(job),
        "model": job.model,
    }

    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, str]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        return {"data": json.dumps({**base, "choices": [choice]})}

    def error(status: int, code: str, message: str) -> dict[str, str]:
        body = {"message": message, "type": error_type(status), "code": code, "param": None}
        return {"data": json.dumps({"error": body})}

    yield chunk({"role": "assistant", "content": ""})
    sent: list[str] = []
    # A replayed job (Idempotency-Key) may be part way through: its text comes whole at the end.
    live = door.created
    async with aclosing(events):
        async for item in events:
            data = item["data"]
            if item["event"] == "token" and live and data.get("text"):
                sent.append(str(data["text"]))
                yield chunk({"content": sent[-1]})
            elif item["event"] == "log" and data.get("restart") and live:
                # The next backend starts the answer over, and what was sent cannot be taken
                # back: the job is cancelled and refunded, and the client told to retry. If it
                # has already ended, its answer is checked against what was sent, below.
                try:
                    await gateway.cancel(door.account, job.id)
                except Conflict:
                    live = False
                    continue
                yield error(
                    502,
                    "backend_error",
                    f"the backend of job {job.id} failed part way through the answer; "
                    "the job was cancelled and refunded, retry the request",
                )
                return
            elif item["event"] == "status" and JobStatus(data["status"]).is_terminal:
                break
    job = await gateway.get(job.id)
    if job.status != JobStatus.COMPLETED:
        ended = job_error(job, door.headers)
        yield error(ended.status, ended.code, ended.message)
        return
    output = job.output or {}
    text, done = str(output.get("text", "")), "".join(sent)
    if not text.startswith(done):
        yield error(
            502,
            "backend_error",
            "a backend failed part way through the answer and another one answered anew; "
            f"the whole answer is at GET /status/{job.id}",
        )
        return
    if len(text) > len(done):
        yield chunk({"content": text[len(done) :]})
    yield chunk({}, finish_reason(output))
    if include_usage:
        yield {"data": json.dumps({**base, "choices": [], "usage": chat_usage(job)})}
    yield {"data": "[DONE]"}
