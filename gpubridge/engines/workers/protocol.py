"""The messages between the gateway and a worker process, and how they are framed.

A frame is a 4-byte big-endian header length, a JSON header, then the raw bytes of the blobs the
header lists (``"blobs": [size, ...]``): media inputs and output files travel unencoded. Every
header has an ``op``; job messages carry the job id in ``job``.

Gateway to worker: ``run`` (a job), ``cancel``, ``load`` (warm a model), ``status``.
Worker to gateway: ``hello`` (after start), ``event`` (token, progress, log), ``result``,
``error``, ``stopped`` (the job was cancelled and its work has ended), ``loaded``, ``status``.
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

from gpubridge import errors
from gpubridge.engines.base import (
    BackendConfig,
    EngineRequest,
    EngineResult,
    MediaInput,
    ModelRef,
    OutputFile,
    Usage,
)
from gpubridge.errors import BackendError, GpubridgeError

MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_BLOB_BYTES = 2 * 1024 * 1024 * 1024
FILE_MARKER = "$gpubridge_output_file"
_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    """The other side sent something that is not a frame of this protocol."""


@dataclass
class Message:
    """One frame: its JSON header and its blobs."""

    header: dict[str, Any]
    blobs: list[bytes] = field(default_factory=list)

    @property
    def op(self) -> str:
        return str(self.header.get("op", ""))

    @property
    def job(self) -> str | None:
        job = self.header.get("job")
        return str(job) if job is not None else None


def encode(message: Message) -> bytes:
    header = dict(message.header)
    if message.blobs:
        header["blobs"] = [len(b) for b in message.blobs]
    raw = json.dumps(header, separators=(",", ":"), default=str).encode()
    return b"".join([_LENGTH.pack(len(raw)), raw, *message.blobs])


async def write(writer: asyncio.StreamWriter, message: Message) -> None:
    writer.write(encode(message))
    await writer.drain()


async def read(reader: asyncio.StreamReader) -> Message | None:
    """The next frame, or ``None`` at a clean end of stream."""
    try:
        prefix = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("the stream ended inside a frame") from exc
        return None
    (size,) = _LENGTH.unpack(prefix)
    if size > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header of {size} bytes is too large")
    try:
        header = json.loads(await reader.readexactly(size))
        if not isinstance(header, dict):
            raise ProtocolError("frame header is not an object")
        sizes = header.pop("blobs", [])
        if not isinstance(sizes, list):
            raise ProtocolError("frame blobs are not a list")
        blobs = []
        for blob_size in sizes:
            if not isinstance(blob_size, int) or not 0 <= blob_size <= MAX_BLOB_BYTES:
                raise ProtocolError(f"bad blob size {blob_size!r}")
            blobs.append(await reader.readexactly(blob_size))
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("the stream ended inside a frame") from exc
    except (ValueError, AttributeError) as exc:
        raise ProtocolError(f"bad frame: {exc}") from exc
    return Message(header, blobs)


async def decode(data: bytes) -> Message:
    """The one frame that ``data`` holds (a WebSocket message)."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    message = await read(reader)
    if message is None or not reader.at_eof():
        raise ProtocolError("a message must hold exactly one frame")
    return message


# -- jobs -------------------------------------------------------------------------------------
def run_message(backend: BackendConfig, request: EngineRequest) -> Message:
    blobs: list[bytes] = []
    media = []
    for name, item in request.media.items():
        media.append({"name": name, "field": item.field, "content_type": item.content_type})
        blobs.append(item.data)
    header = {
        "op": "run",
        "job": request.job_id,
        "backend": backend.model_dump(mode="json"),
        "service": request.service,
        "model": asdict(request.model),
        "input": request.input,
        "media": media,
    }
    return Message(header, blobs)


def decode_run(message: Message) -> tuple[BackendConfig, EngineRequest]:
    h = message.header
    media = {
        m["name"]: MediaInput(m["field"], blob, m["content_type"])
        for m, blob in zip(h.get("media", []), message.blobs, strict=True)
    }
    request = EngineRequest(
        job_id=str(h["job"]),
        service=str(h["service"]),
        model=ModelRef(**h["model"]),
        input=h["input"],
        media=media,
    )
    return BackendConfig.model_validate(h["backend"]), request


def result_message(job_id: str, result: EngineResult) -> Message:
    blobs: list[bytes] = []

    def walk(value: Any) -> Any:
        if isinstance(value, OutputFile):
            blobs.append(value.data)
            return {
                FILE_MARKER: len(blobs) - 1,
                "content_type": value.content_type,
                "metadata": value.metadata,
            }
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    header = {"op": "result", "job": job_id, "output": walk(result.output)}
    header["usage"] = asdict(result.usage)
    return Message(header, blobs)


def decode_result(message: Message) -> EngineResult:
    blobs = message.blobs

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if FILE_MARKER in value:
                return OutputFile(
                    blobs[int(value[FILE_MARKER])],
                    str(value["content_type"]),
                    dict(value.get("metadata") or {}),
                )
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    usage = Usage(**message.header.get("usage", {}))
    return EngineResult(output=walk(message.header["output"]), usage=usage)


def error_message(job_id: str, exc: BaseException) -> Message:
    """An ``error`` frame for ``exc``; gpubridge errors keep their class, code and details."""
    if isinstance(exc, GpubridgeError):
        body = {"class": type(exc).__name__, **exc.to_dict()}
    else:
        text = str(exc)
        message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        body = {"class": "BackendError", "code": BackendError.code, "message": message}
    return Message({"op": "error", "job": job_id, "error": body})


def decode_error(message: Message) -> GpubridgeError:
    """The gpubridge error a worker reported (a ``BackendError`` for anything unknown)."""
    body = dict(message.header.get("error") or {})
    cls = getattr(errors, str(body.pop("class", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, GpubridgeError)):
        cls = BackendError
    text = str(body.pop("message", "the worker reported an error"))
    code = body.pop("code", None)
    body.pop("retry_after", None)
    try:
        return cls(text, code=code, **body)
    except TypeError:
        return BackendError(text, code=code, **body)
