"""A loopback HTTP server for media inputs (images, audio) and small media files built in code.

``serve_media()`` yields a ``MediaServer``; ``server.add("cat.png", data, "image/png")`` returns
the URL a job can name in ``image_url``. Paths under ``/redirect/<name>`` answer 302 to the file,
``/status/<code>`` answers that status, ``/slow/<name>`` waits ``slow_s`` first, and
``/trickle/<name>`` sends the file one byte every ``trickle_s``. ``server.requests`` lists the
path of every request it received, in order.
"""

from __future__ import annotations

import asyncio
import io
import math
import socket
import struct
import threading
import wave
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class MediaServer:
    base_url: str
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    slow_s: float = 5.0
    trickle_s: float = 0.2
    requests: list[str] = field(default_factory=list)
    """The path of every request received (``/files/cat.png``), in order."""

    def hits(self, name: str) -> int:
        """How many requests asked for ``name``, by any route."""
        return sum(1 for path in self.requests if path.rsplit("/", 1)[-1] == name)

    def add(self, name: str, data: bytes, content_type: str) -> str:
        """Serve ``data`` at ``/files/<name>``; returns its URL."""
        self.files[name] = (data, content_type)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"{self.base_url}/files/{name}"


def _app(server: MediaServer) -> Any:
    async def serve(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in server.files:
            return Response("not found", status_code=404)
        data, content_type = server.files[name]
        return Response(data, media_type=content_type)

    async def redirect(request: Request) -> Response:
        return RedirectResponse(server.url(request.path_params["name"]), status_code=302)

    async def status(request: Request) -> Response:
        return Response("status", status_code=int(request.path_params["code"]))

    async def slow(request: Request) -> Response:
        await asyncio.sleep(server.slow_s)
        return await serve(request)

    async def trickle(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in server.files:
            return Response("not found", status_code=404)
        data, content_type = server.files[name]

        async def bytes_slowly() -> AsyncIterator[bytes]:
            for at in range(len(data)):
                yield data[at : at + 1]
                await asyncio.sleep(server.trickle_s)

        return StreamingResponse(bytes_slowly(), media_type=content_type)

    class Recorder:
        def __init__(self, app: Starlette) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                server.requests.append(scope["path"])
            await self.app(scope, receive, send)

    return Recorder(
        Starlette(
            routes=[
                Route("/files/{name:path}", serve),
                Route("/redirect/{name:path}", redirect),
                Route("/status/{code:int}", status),
                Route("/slow/{name:path}", slow),
                Route("/trickle/{name:path}", trickle),
            ]
        )
    )


@contextmanager
def serve_media() -> Iterator[MediaServer]:
    """Serve media on 127.0.0.1 at an ephemeral port until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = MediaServer(f"http://127.0.0.1:{sock.getsockname()[1]}")
    config = uvicorn.Config(_app(server), log_config=None, access_log=False, lifespan="off")
    runner = uvicorn.Server(config)
    thread = threading.Thread(
        target=runner.run, kwargs={"sockets": [sock]}, name="media-server", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        runner.should_exit = True
        thread.join(timeout=10)
        sock.close()


def png_bytes(width: int = 32, height: int = 32, seed: int = 0) -> bytes:
    """A small RGB PNG with a gradient and a bright square (no Pillow needed)."""
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            inside = width // 4 <= x < 3 * width // 4 and height // 4 <= y < 3 * height // 4
            r = 230 if inside else (x * 255 // max(width - 1, 1) + seed) % 256
            g = 200 if inside else (y * 255 // max(height - 1, 1)) % 256
            b = 40 if inside else (seed * 37) % 256
            row += bytes([r, g, b])
        rows.append(bytes(row))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def wav_bytes(seconds: float = 1.0, rate: int = 16_000, freq: float = 440.0) -> bytes:
    """A mono 16-bit WAV tone of ``seconds``."""
    frames = int(seconds * rate)
    samples = (
        int(12_000 * math.sin(2 * math.pi * freq * i / rate) * (0.5 + 0.5 * math.sin(i / 800)))
        for i in range(frames)
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()
