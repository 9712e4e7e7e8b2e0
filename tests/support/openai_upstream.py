"""A small OpenAI-compatible upstream (Starlette, served by uvicorn in a background thread).

Answers ``/v1/chat/completions`` (streamed with a usage chunk, or whole), ``/v1/embeddings``
(deterministic vectors from a hash of each text) and ``/v1/models``. An ``UpstreamBehaviour``
holds knobs that tests may change while it runs: fail with a status, close the connection part
way, answer late, fail every n-th request, require an API key, leave out usage or report a
given prompt size. Lean
enough to serve as an instant upstream in benchmarks (set ``record=False`` there).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send


@dataclass
class UpstreamBehaviour:
    """What the upstream does; change fields between (or during) requests."""

    reply: tuple[str, ...] = ("Hello", ",", " world", "!")
    model: str = "upstream-model"
    dimensions: int = 8
    api_key: str | None = None
    fail_status: int | None = None
    delay_s: float = 0.0
    """Wait this long before answering chat and embeddings requests."""
    drop_after: int | None = None
    """Close the connection after this many chunks of a chat stream (0: before any body)."""
    fail_every: int = 0
    """Fail the n-th, 2n-th, 3rd-n-th ... chat or embeddings request (0: none), taking turns
    through ``fail_every_how``: a deterministic share of failures for failover under load."""
    fail_every_how: tuple[int | str, ...] = (500,)
    """How those requests fail, in turn: an HTTP status, or "drop" to close the connection
    after the response headers."""
    posts: int = 0
    """Chat and embeddings requests received so far."""
    failed: int = 0
    """Requests failed on purpose by ``fail_every``."""
    send_usage: bool = True
    prompt_tokens: int | None = None
    """Report this many prompt tokens in chat usage (default: the words of the messages)."""
    ignore_stream: bool = False
    """Answer chat with one JSON body even when a stream was asked for."""
    always_stream: bool = False
    """Answer chat with a stream even when none was asked for."""
    garbage: bool = False
    """Answer chat with a stream whose chunk is not JSON."""
    record: bool = True
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))

    def reset(self) -> None:
        """Back to the defaults, and forget recorded requests."""
        fresh = UpstreamBehaviour()
        for name in fresh.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """The vector the upstream returns for ``text``: bytes of its SHA-256, scaled to [-1, 1]."""
    digest = hashlib.sha256(text.encode()).digest()
    while len(digest) < dimensions:
        digest += hashlib.sha256(digest).digest()
    return [(b - 127.5) / 127.5 for b in digest[:dimensions]]


class _Dropped(Exception):
    """Raised inside a response to make the server close the connection."""


class _DropConnection:
    """An ASGI response that starts a body, then breaks off."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        raise _Dropped("connection closed on purpose")


def _words(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in messages)


def build_app(behaviour: UpstreamBehaviour) -> Starlette:
    """The upstream's ASGI app, driven by ``behaviour``."""

    def planned_failure() -> Response | None:
        """The failure ``fail_every`` plans for this request, if any."""
        behaviour.posts += 1
        if not behaviour.fail_every or behaviour.posts % behaviour.fail_every:
            return None
        how = behaviour.fail_every_how[behaviour.failed % len(behaviour.fail_every_how)]
        behaviour.failed += 1
        if how == "drop":
            return _DropConnection()  # type: ignore[return-value]
        error = {"error": {"message": "planned upstream failure", "type": "server_error"}}
        return JSONResponse(error, status_code=int(how))

    async def admit(request: Request) -> tuple[dict[str, Any], Response | None]:
        body: dict[str, Any] = await request.json() if request.method == "POST" else {}
        if behaviour.record:
            behaviour.requests.append(
                {
                    "path": request.url.path,
                    "authorization": request.headers.get("authorization"),
                    "body": body,
                }
            )
        if behaviour.delay_s and request.method == "POST":
            await asyncio.sleep(behaviour.delay_s)
        expected = f"Bearer {behaviour.api_key}"
        if behaviour.api_key and request.headers.get("authorization") != expected:
            error = {"error": {"message": "invalid api key", "type": "auth"}}
            return body, JSONResponse(error, status_code=401)
        if behaviour.fail_status is not None:
            error = {"error": {"message": "upstream failure", "type": "server_error"}}
            return body, JSONResponse(error, status_code=behaviour.fail_status)
        if request.method == "POST":
            return body, planned_failure()
        return body, None

    async def chat(request: Request) -> Response:
        body, refused = await admit(request)
        if refused is not None:
            return refused
        limit = body.get("max_tokens") or len(behaviour.reply)
        words = behaviour.reply[:limit]
        finish = "length" if len(words) < len(behaviour.reply) else "stop"
        prompt_tokens = behaviour.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = _words(body.get("messages", []))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        }
        ident = {"id": "chatcmpl-1", "created": int(time.time()), "model": behaviour.model}
        if behaviour.garbage:
            return Response("data: {not json\n\n", media_type="text/event-stream")
        if (not body.get("stream") and not behaviour.always_stream) or behaviour.ignore_stream:
            message = {"role": "assistant", "content": "".join(words)}
            choice = {"index": 0, "message": message, "finish_reason": finish}
            completion = {**ident, "object": "chat.completion", "choices": [choice]}
            if behaviour.send_usage:
                completion["usage"] = usage
            return JSONResponse(completion)
        if behaviour.drop_after == 0:
            return _DropConnection()  # type: ignore[return-value]
        include_usage = (body.get("stream_options") or {}).get("include_usage")

        async def events() -> AsyncIterator[str]:
            base = {**ident, "object": "chat.completion.chunk"}
            for i, word in enumerate(words):
                if behaviour.drop_after is not None and i >= behaviour.drop_after:
                    raise _Dropped("connection closed on purpose")
                choice = {"index": 0, "delta": {"content": word}, "finish_reason": None}
                yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"
            last = {"index": 0, "delta": {}, "finish_reason": finish}
            yield f"data: {json.dumps({**base, 'choices': [last]})}\n\n"
            if include_usage and behaviour.send_usage:
                yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def embeddings(request: Request) -> Response:
        body, refused = await admit(request)
        if refused is not None:
            return refused
        if behaviour.drop_after == 0:
            return _DropConnection()  # type: ignore[return-value]
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": fake_embedding(t, behaviour.dimensions),
            }
            for i, t in enumerate(texts)
        ]
        tokens = sum(len(t.split()) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        payload: dict[str, Any] = {"object": "list", "data": data, "model": behaviour.model}
        if behaviour.send_usage:
            payload["usage"] = usage
        return JSONResponse(payload)

    async def models(request: Request) -> Response:
        _, refused = await admit(request)
        if refused is not None:
            return refused
        model = {"id": behaviour.model, "object": "model", "owned_by": "tests"}
        return JSONResponse({"object": "list", "data": [model]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


@dataclass
class Upstream:
    """A running upstream: its base URL (ending in /v1) and the knobs it obeys."""

    base_url: str
    behaviour: UpstreamBehaviour

    def __str__(self) -> str:
        return self.base_url


@contextmanager
def serve_openai_upstream(
    behaviour: UpstreamBehaviour | None = None, **knobs: Any
) -> Iterator[Upstream]:
    """Serve the upstream on 127.0.0.1 at an ephemeral port until the block ends.

    ``knobs`` are ``UpstreamBehaviour`` fields, for when no ``behaviour`` is given. The
    listening socket is bound before the server thread starts, so clients may connect at once:
    the kernel queues their connections until the server accepts them.
    """
    behaviour = behaviour or UpstreamBehaviour(**knobs)
    app = build_app(behaviour)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="openai-upstream", daemon=True
    )
    thread.start()
    try:
        yield Upstream(f"http://127.0.0.1:{port}/v1", behaviour)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def closed_port() -> int:
    """A local port with nothing listening on it (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
