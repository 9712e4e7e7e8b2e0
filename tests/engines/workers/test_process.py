"""The worker side, in this process over a socket pair: it says hello, survives a message it
cannot handle, reports its status, and stops its jobs when the gateway goes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import anyio
import pytest

from gpubridge.engines.workers.channels import StreamChannel
from gpubridge.engines.workers.process import WorkerServer
from gpubridge.engines.workers.protocol import Message


@pytest.fixture
async def gateway_end() -> AsyncIterator[tuple[StreamChannel, WorkerServer]]:
    ours, theirs = socket.socketpair()
    server = WorkerServer(name="worker-t", device="cpu", memory_budget_bytes=None)
    reader, writer = await asyncio.open_unix_connection(sock=theirs)
    serving = asyncio.create_task(server.serve(StreamChannel(reader, writer)))
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    channel = StreamChannel(reader, writer)
    try:
        yield channel, server
    finally:
        await channel.close()
        with anyio.fail_after(10):
            await serving


async def test_the_worker_says_hello_and_survives_a_message_it_cannot_handle(
    gateway_end: tuple[StreamChannel, WorkerServer],
) -> None:
    channel, _ = gateway_end
    with anyio.fail_after(10):
        hello = await channel.receive()
        assert hello is not None and hello.op == "hello"
        assert hello.header["name"] == "worker-t" and hello.header["running"] == []
        await channel.send(Message({"op": "run", "job": "j1"}))  # no backend, no model
        await channel.send(Message({"op": "status"}))
        status = await channel.receive()
    assert status is not None and status.op == "status"
    assert status.header["models"] == [] and status.header["rss_bytes"] > 0


async def test_the_worker_stops_serving_when_the_gateway_closes_its_end(
    gateway_end: tuple[StreamChannel, WorkerServer],
) -> None:
    channel, server = gateway_end
    with anyio.fail_after(10):
        assert (await channel.receive()) is not None
    await channel.close()
    with anyio.fail_after(10):
        while server.channel is not None:
            await asyncio.sleep(0.01)
