"""``/workers/connect``: the WebSocket that workers on other machines dial to take jobs.

The worker authenticates with ``Authorization: Bearer <worker token>``; a refused token closes
the connection with code 4401. Frames are the worker protocol's, one per binary message; the
first is the worker's ``hello``.
"""

from __future__ import annotations

import contextlib
import logging

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gpubridge.engines.workers.channels import MessageChannel
from gpubridge.engines.workers.protocol import ProtocolError, decode
from gpubridge.errors import GpubridgeError
from gpubridge.gateway import Gateway

log = logging.getLogger(__name__)

REFUSED = 4401
HELLO_TIMEOUT_S = 30


async def worker_socket(websocket: WebSocket) -> None:
    gateway: Gateway = websocket.app.state.gateway
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    try:
        grant = await gateway.remote_workers.admit(token if scheme.lower() == "bearer" else "")
    except GpubridgeError as refused:
        await websocket.close(code=REFUSED, reason=refused.message[:120])
        return
    await websocket.accept()
    try:
        hello = await decode(await websocket.receive_bytes())
    except (ProtocolError, WebSocketDisconnect, KeyError, RuntimeError):
        await websocket.close(code=1002, reason="expected a hello frame")
        return
    if hello.op != "hello":
        await websocket.close(code=1002, reason="expected a hello frame")
        return

    async def receive() -> bytes | None:
        try:
            return await websocket.receive_bytes()
        except (WebSocketDisconnect, KeyError, RuntimeError):
            return None

    async def send(data: bytes) -> None:
        try:
            await websocket.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise ConnectionError("the worker went away") from exc

    async def close() -> None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # already closed
            await websocket.close()

    channel = MessageChannel(send, receive, close)
    header = {k: v for k, v in hello.header.items() if k != "op"}
    await gateway.remote_workers.serve(grant, channel, header)


def worker_routes() -> list[WebSocketRoute]:
    return [WebSocketRoute("/workers/connect", worker_socket)]
