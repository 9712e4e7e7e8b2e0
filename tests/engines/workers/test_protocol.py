"""The frames between the gateway and a worker: jobs, files and errors survive the trip."""

from __future__ import annotations

import asyncio

import pytest

from gpubridge.engines.base import (
    BackendConfig,
    EngineRequest,
    EngineResult,
    MediaInput,
    ModelRef,
    OutputFile,
    Usage,
)
from gpubridge.engines.workers import protocol
from gpubridge.engines.workers.protocol import Message, ProtocolError
from gpubridge.errors import BackendError, InvalidInput, ServiceUnavailable


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def round_trip(message: Message) -> Message:
    received = await protocol.read(reader_of(protocol.encode(message)))
    assert received is not None
    return received


async def test_a_run_message_carries_the_job_and_its_media_bytes_unencoded() -> None:
    backend = BackendConfig(name="local", type="diffusers-img2img", options={"dtype": "float16"})
    image = bytes(range(256)) * 4
    request = EngineRequest(
        "job-1",
        "img2img",
        ModelRef("sdxl", "/models/sdxl", {"steps": 4}),
        {"prompt": "a fox", "image_url": "https://example.com/a.png"},
        {"image_url": MediaInput("image_url", image, "image/png")},
    )
    encoded = protocol.encode(protocol.run_message(backend, request))
    assert image in encoded  # raw bytes, not base64
    received = await protocol.read(reader_of(encoded))
    assert received is not None
    assert protocol.decode_run(received) == (backend, request)


async def test_a_result_keeps_its_output_files_wherever_they_sit() -> None:
    picture = OutputFile(b"\x89PNG...", "image/png", {"seed": 7})
    result = EngineResult(
        {"images": [picture, picture], "nested": {"mask": picture}, "seed": 7},
        Usage(outputs=2, compute_seconds=1.5),
    )
    received = await round_trip(protocol.result_message("job-1", result))
    assert protocol.decode_result(received) == result


@pytest.mark.parametrize(
    "error",
    [
        InvalidInput("prompt is empty", violations=[{"path": "prompt"}]),
        ServiceUnavailable("vllm is not installed here", backend_type="vllm"),
        BackendError("out of memory", code="worker_lost"),
    ],
)
async def test_gpubridge_errors_keep_their_class_code_and_details(error: Exception) -> None:
    decoded = protocol.decode_error(await round_trip(protocol.error_message("job-1", error)))
    assert type(decoded) is type(error)
    assert decoded.to_dict() == error.to_dict()  # type: ignore[attr-defined]


async def test_any_other_exception_becomes_a_backend_error_naming_it() -> None:
    message = protocol.error_message("job-1", RuntimeError("CUDA error: device-side assert"))
    decoded = protocol.decode_error(await round_trip(message))
    assert isinstance(decoded, BackendError)
    assert decoded.message == "RuntimeError: CUDA error: device-side assert"


async def test_a_clean_end_of_stream_reads_as_none_and_a_cut_frame_as_an_error() -> None:
    assert await protocol.read(reader_of(b"")) is None
    whole = protocol.encode(Message({"op": "event", "job": "j"}, [b"abc"]))
    for cut in (2, 6, len(whole) - 1):
        with pytest.raises(ProtocolError):
            await protocol.read(reader_of(whole[:cut]))


async def test_a_header_that_is_not_an_object_or_too_large_is_refused() -> None:
    with pytest.raises(ProtocolError):
        await protocol.read(reader_of(b"\x00\x00\x00\x02[]"))
    with pytest.raises(ProtocolError):
        await protocol.read(reader_of(b"\xff\xff\xff\xff"))
