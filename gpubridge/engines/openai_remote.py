"""A remote OpenAI-compatible backend: ``vllm serve``, a llama.cpp server, OpenAI itself.

A chat job that asks for its tokens as they come (``stream: true`` in its input: the
OpenAI-compatible door's streamed chat, or a caller reading ``GET /status/{id}/stream``) is
streamed upstream, and each token reaches the job's subscribers as it arrives; any other is
asked for one JSON completion, which costs the upstream and the gateway far less than a
server-sent event per token. One aiohttp session per engine, with a connection pool sized to
the backend's concurrency, created inside the running event loop on first use.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineEvent,
    EngineRequest,
    EngineResult,
    ModelRef,
    Usage,
)
from gpubridge.engines.inputs import (
    chat_messages,
    embedding_output,
    embedding_texts,
    estimate_tokens,
    message_text,
    sampling,
)
from gpubridge.errors import BackendError, ConfigurationError

CHAT = "chat"
EMBEDDINGS = "embeddings"
SERVICE_TASKS = {"llm-4090": CHAT, "embedding-l4": EMBEDDINGS}
_MAX_LINE = 1 << 20


class RemoteOptions(BaseModel):
    """The ``options`` of an ``openai`` backend in the catalog."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(pattern=r"^https?://", description="Ends in /v1.")
    model: str | None = Field(default=None, description="Upstream model name; default: source.")
    model_map: dict[str, str] = Field(default_factory=dict, description="Public id -> upstream.")
    timeout_s: float = Field(default=300.0, gt=0)


class OpenAIRemote:
    """An ``Engine`` that forwards jobs to an OpenAI-compatible HTTP server."""

    def __init__(self, config: BackendConfig, api_key: str | None = None) -> None:
        try:
            self.options = RemoteOptions.model_validate(config.options)
        except ValidationError as exc:
            raise ConfigurationError(f"backend {config.name!r}: invalid options: {exc}") from exc
        self.name = config.name
        self._base = self.options.base_url.rstrip("/")
        self._api_key = api_key or None
        self._concurrency = config.concurrency
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- Engine -----------------------------------------------------------------------------
    async def load(self, model: ModelRef) -> None:
        """Nothing to load: the upstream holds the weights."""

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        task = SERVICE_TASKS.get(request.service)
        if task == CHAT:
            return await self._chat(request, emit)
        if task == EMBEDDINGS:
            return await self._embeddings(request)
        raise BackendError(f"backend {self.name} does not serve {request.service!r}")

    async def health(self) -> bool:
        try:
            async with self._http().get(
                f"{self._base}/models",
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=min(self.options.timeout_s, 10.0)),
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def unload(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # -- HTTP -------------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # One connection more than the router lets through, so a health check never
            # queues behind running jobs.
            connector = aiohttp.TCPConnector(limit=self._concurrency + 1)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.options.timeout_s),
                read_bufsize=_MAX_LINE,
            )
            self._loop = loop
        return self._session

    def _headers(self) -> dict[str, str]:
        if self._api_key is None:
            return {}
        return {"Authorization": f"Bearer {self._api_key}"}

    def _upstream_model(self, model: ModelRef) -> str:
        return self.options.model_map.get(model.id) or self.options.model or model.source

    def _fail(self, message: str, status: int | None = None) -> BackendError:
        if self._api_key:
            message = message.replace(self._api_key, "***")
        details: dict[str, Any] = {"backend": self.name}
        if status is not None:
            details["status"] = status
        return BackendError(f"upstream {self.name}: {message}", **details)

    @asynccontextmanager
    async def _post(self, path: str, body: dict[str, Any]) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST ``body`` and give the 2xx response; any failure, then or while reading the
        response inside the ``async with`` block, becomes a ``BackendError``."""
        try:
            async with self._http().post(
                f"{self._base}{path}", json=body, headers=self._headers()
            ) as response:
                if not 200 <= response.status < 300:
                    raise self._fail(await _error_text(response), response.status)
                yield response
        except BackendError:
            raise
        except TimeoutError as exc:
            raise self._fail(f"timed out after {self.options.timeout_s:g} s") from exc
        except aiohttp.ClientResponseError as exc:
            raise self._fail(f"bad response: {exc.message}", exc.status) from exc
        except aiohttp.ClientError as exc:
            raise self._fail(f"{type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            raise self._fail(f"malformed response ({type(exc).__name__})") from exc

    # -- services ---------------------------------------------------------------------------
    async def _chat(self, request: EngineRequest, emit: Emit) -> EngineResult:
        messages = chat_messages(request.input)
        params = sampling(request.input)
        streamed = request.input.get("stream") is True
        body: dict[str, Any] = {"model": self._upstream_model(request.model), "messages": messages}
        if streamed:
            body.update(stream=True, stream_options={"include_usage": True})
        else:
            body["stream"] = False
        for key in ("max_tokens", "temperature", "top_p", "seed"):
            value = getattr(params, key)
            if value is not None:
                body[key] = value
        if params.stop:
            body["stop"] = params.stop
        started = time.perf_counter()
        pieces: list[str] = []
        finish_reason: str | None = None
        usage: dict[str, Any] | None = None
        done = False
        async with self._post("/chat/completions", body) as response:
            sse = response.content_type == "text/event-stream"
            if response.content_type == "application/json" or not (streamed or sse):
                # One body: asked for, or sent by an upstream that ignores "stream".
                whole = await response.json(content_type=None)
                text, finish_reason, usage = self._read(whole, "message")
                pieces = [text] if text else []
                if pieces:
                    await emit(EngineEvent("token", {"text": text}))
                done = True
            else:
                async for data in _sse_data(response):
                    if data == "[DONE]":
                        # Read on to the end of the body so the connection can be reused.
                        done = True
                        continue
                    delta, finished, chunk_usage = self._read(self._decode(data), "delta")
                    if delta:
                        pieces.append(delta)
                        await emit(EngineEvent("token", {"text": delta}))
                    finish_reason = finished or finish_reason
                    usage = chunk_usage or usage
        if not done and finish_reason is None:
            raise self._fail("the stream ended before the completion did")
        if usage is not None:
            prompt_tokens = usage["prompt_tokens"]
            completion_tokens = usage["completion_tokens"]
        else:
            # The upstream sent no usage, so the true counts are unknown. Servers stream about
            # one token per chunk, and a token is about four characters of English text.
            completion_tokens = max(len(pieces), estimate_tokens("".join(pieces)))
            prompt_tokens = estimate_tokens("".join(message_text(m) for m in messages))
        return EngineResult(
            output={
                "text": "".join(pieces),
                "finish_reason": finish_reason or "stop",
                "model": request.model.id,
            },
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                compute_seconds=time.perf_counter() - started,
            ),
        )

    def _read(self, body: Any, field: str) -> tuple[str, str | None, dict[str, int] | None]:
        """Text, finish reason and usage of a completion (``message``) or chunk (``delta``)."""
        try:
            text, finish_reason = "", None
            for choice in body.get("choices") or ():
                text += (choice.get(field) or {}).get("content") or ""
                finish_reason = choice.get("finish_reason") or finish_reason
            usage = body.get("usage")
            if usage is not None:
                usage = {
                    "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                    "completion_tokens": int(usage.get("completion_tokens") or 0),
                }
            return str(text), finish_reason, usage
        except (AttributeError, TypeError, ValueError) as exc:
            raise self._fail("malformed completion") from exc

    async def _embeddings(self, request: EngineRequest) -> EngineResult:
        texts, batch = embedding_texts(request.input)
        body = {
            "model": self._upstream_model(request.model),
            "input": texts if batch else texts[0],
            "encoding_format": "float",
        }
        started = time.perf_counter()
        async with self._post("/embeddings", body) as response:
            payload = await response.json(content_type=None)
        vectors = _vectors(payload, len(texts))
        if vectors is None:
            raise self._fail("malformed embeddings body")
        usage = payload.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        if not isinstance(prompt_tokens, int):
            prompt_tokens = sum(estimate_tokens(t) for t in texts)
        return EngineResult(
            output=embedding_output(vectors, batch),
            usage=Usage(prompt_tokens=prompt_tokens, compute_seconds=time.perf_counter() - started),
        )

    def _decode(self, data: str) -> dict[str, Any]:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise self._fail("malformed stream chunk") from exc
        if not isinstance(chunk, dict):
            raise self._fail("malformed stream chunk")
        if chunk.get("error"):
            error = chunk["error"]
            detail = error.get("message") if isinstance(error, dict) else error
            raise self._fail(f"error in stream: {str(detail)[:200]}")
        return chunk


def _vectors(payload: Any, count: int) -> list[list[float]] | None:
    """The embeddings of an OpenAI ``/embeddings`` body in input order, or None if malformed."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return None
    rows = payload["data"]
    if len(rows) != count or not all(isinstance(r, dict) for r in rows):
        return None
    vectors: list[list[float]] = []
    for row in sorted(rows, key=lambda r: r.get("index", 0)):
        vector = row.get("embedding")
        if not isinstance(vector, list) or not vector:
            return None
        vectors.append(vector)
    return vectors


async def _error_text(response: aiohttp.ClientResponse) -> str:
    """``HTTP <status>`` and the upstream's error message, kept short."""
    try:
        raw = (await response.content.read(2048)).decode("utf-8", "replace")
    except (aiohttp.ClientError, TimeoutError):
        raw = ""
    message = raw
    try:
        body = json.loads(raw)
        error = body.get("error") if isinstance(body, dict) else None
        message = str(error.get("message") if isinstance(error, dict) else error or raw)
    except ValueError:
        pass
    message = " ".join(message.split())[:200]
    return f"HTTP {response.status}" + (f": {message}" if message else "")


async def _sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event in ``response``."""
    lines: list[str] = []
    async for raw in response.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
        elif line.startswith("data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(" ") else value)
    if lines:
        yield "\n".join(lines)


def create(config: BackendConfig, context: EngineContext) -> OpenAIRemote:
    """The ``openai`` backend type; its API key is ``context.secrets[config.name]`` if set."""
    return OpenAIRemote(config, context.secrets.get(config.name))
