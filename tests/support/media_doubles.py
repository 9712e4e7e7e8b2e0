"""Test doubles for the speech-to-text, text-to-speech and image services: engines that record
what they were given and answer in the shapes the real runtimes use, without any model.
They are registered in a test app's engine registry; they are not production engines."""

from __future__ import annotations

import asyncio
from typing import Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineFactory,
    EngineRequest,
    EngineResult,
    ModelRef,
    OutputFile,
    Usage,
)
from tests.support.media_server import png_bytes, wav_bytes

TRANSCRIBER_TYPE = "test-transcriber"
SPEAKER_TYPE = "test-speaker"
PAINTER_TYPE = "test-painter"

AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "opus": "audio/ogg"}
SEGMENTS = [
    {
        "start": 0.0,
        "end": 0.6,
        "text": "hello",
        "words": [{"start": 0.0, "end": 0.6, "word": "hello", "probability": 0.9}],
    },
    {
        "start": 0.6,
        "end": 1.25,
        "text": "there",
        "words": [{"start": 0.6, "end": 1.25, "word": "there", "probability": 0.8}],
    },
]


def speech_bytes(fmt: str) -> bytes:
    """What the speaker double answers for a format: a real WAV, or bytes with the format's
    leading signature."""
    if fmt == "wav":
        return wav_bytes(0.05)
    magic = {"mp3": b"ID3\x04\x00", "flac": b"fLaC", "opus": b"OggS"}[fmt]
    return magic + bytes(range(200))


class _Recording:
    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[EngineRequest] = []
        self.gate: asyncio.Event | None = None
        """When set, each run waits for it before answering."""

    async def _record(self, request: EngineRequest) -> None:
        self.seen.append(request)
        if self.gate is not None:
            await self.gate.wait()

    async def load(self, model: ModelRef) -> None:
        return None

    async def health(self) -> bool:
        return True

    async def unload(self) -> None:
        return None


class Transcriber(_Recording):
    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        await self._record(request)
        words = request.input.get("timestamps") == "word"
        segments = [
            {k: v for k, v in s.items() if k != "words" or words}
            for s in SEGMENTS
            if request.input.get("timestamps") != "none"
        ]
        output = {
            "text": "hello there",
            "language": request.input.get("language", "en"),
            "duration_seconds": 1.25,
            "segments": segments,
        }
        return EngineResult(output, Usage(audio_seconds=1.25, compute_seconds=0.1))


class Speaker(_Recording):
    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        await self._record(request)
        fmt = request.input.get("format", "wav")
        audio = OutputFile(speech_bytes(fmt), AUDIO_TYPES[fmt], {"sample_rate": 24_000})
        return EngineResult({"audio": audio}, Usage(outputs=1, compute_seconds=0.2))


class Painter(_Recording):
    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        await self._record(request)
        count = int(request.input.get("num_outputs", 1))
        images = [
            OutputFile(png_bytes(16, 16, seed=i), "image/png", {"seed": i}) for i in range(count)
        ]
        return EngineResult({"images": images, "seed": 0}, Usage(outputs=count))


class MediaDoubles:
    """One of each double, and the factories that hand them out."""

    def __init__(self) -> None:
        self.transcriber = Transcriber("transcriber")
        self.speaker = Speaker("speaker")
        self.painter = Painter("painter")

    def factories(self) -> dict[str, EngineFactory]:
        def always(engine: Any) -> EngineFactory:
            def create(config: BackendConfig, context: EngineContext) -> Any:
                return engine

            return create

        return {
            TRANSCRIBER_TYPE: always(self.transcriber),
            SPEAKER_TYPE: always(self.speaker),
            PAINTER_TYPE: always(self.painter),
        }


def use_media_doubles(data: dict[str, Any]) -> None:
    """A catalog edit: whisper-l4, tts-l4 and image-4090 served by the doubles."""
    services = data["services"]
    services["whisper-l4"]["backends"] = [{"name": "transcriber", "type": TRANSCRIBER_TYPE}]
    services["tts-l4"]["backends"] = [{"name": "speaker", "type": SPEAKER_TYPE}]
    services["image-4090"]["backends"] = [{"name": "painter", "type": PAINTER_TYPE}]
