"""The two ways frames travel between a gateway and a worker: a local socket (a worker the
gateway started) and a WebSocket (a worker on another machine that dialled in)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from gpubridge.engines.workers import protocol
from gpubridge.engines.workers.protocol import Message


class Channel(Protocol):
    async def send(self, message: Message) -> None:
        """Send one frame; ``ConnectionError`` when the other side is gone."""

    async def receive(self) -> Message | None:
        """The next frame; ``None`` once the other side closed."""

    async def close(self) -> None: ...


class StreamChannel:
    """Frames over a stream socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, message: Message) -> None:
        try:
            await protocol.write(self.writer, message)
        except RuntimeError as exc:  # the transport is closing
            raise ConnectionError(str(exc)) from exc

    async def receive(self) -> Message | None:
        return await protocol.read(self.reader)

    async def close(self) -> None:
        self.writer.close()


class MessageChannel:
    """Frames as the binary messages of a WebSocket, whichever library carries them:
    ``receive_bytes`` returns ``None`` when the connection closed."""

    def __init__(
        self,
        send_bytes: Callable[[bytes], Awaitable[None]],
        receive_bytes: Callable[[], Awaitable[bytes | None]],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self._send = send_bytes
        self._receive = receive_bytes
        self._close = close
        self._lock = asyncio.Lock()

    async def send(self, message: Message) -> None:
        async with self._lock:  # one message at a time on the wire
            await self._send(protocol.encode(message))

    async def receive(self) -> Message | None:
        data = await self._receive()
        return None if data is None else await protocol.decode(data)

    async def close(self) -> None:
        await self._close()
