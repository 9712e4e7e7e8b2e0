"""The gateway's end of a worker on another machine, connected over a WebSocket."""

from __future__ import annotations

import asyncio
import logging

from gpubridge.engines.workers.channels import Channel
from gpubridge.engines.workers.link import WorkerLink
from gpubridge.engines.workers.protocol import Message
from gpubridge.settings import WorkerSpec

log = logging.getLogger(__name__)


class RemoteWorker(WorkerLink):
    """A worker that dialled in; it lives as long as its connection."""

    remote = True

    def __init__(self, spec: WorkerSpec) -> None:
        super().__init__(spec)
        self._connection: Channel | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def serve(self, channel: Channel, hello_header: dict[str, object]) -> None:
        self._connection = channel
        self.starts += 1
        try:
            await self.serve_channel(channel, Message({"op": "hello", **hello_header}))
        finally:
            self._connection = None
            self.lose_all()

    def kill(self) -> None:
        """Drop the connection: the worker stops its jobs and dials again."""
        if self._connection is not None:
            log.warning("disconnecting a remote worker", extra={"worker": self.name})
            task = asyncio.ensure_future(self._connection.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
