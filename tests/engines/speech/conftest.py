"""Tiny random Whisper (transformers and CTranslate2 forms) and WavLM x-vector models, built once
per test run, and helpers shared by the speech tests."""

from __future__ import annotations

import math
import struct
import wave
from io import BytesIO
from pathlib import Path

import pytest

from gpubridge.engines.base import EngineEvent
from tests.support.tiny_whisper import (
    build_tiny_whisper,
    build_tiny_xvector,
    convert_to_ctranslate2,
)


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random multilingual Whisper checkpoint with its processor."""
    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="session")
def tiny_whisper_ct2_dir(tmp_path_factory: pytest.TempPathFactory, tiny_whisper_dir: Path) -> Path:
    """The same checkpoint converted to CTranslate2 by its converter."""
    return convert_to_ctranslate2(tiny_whisper_dir, tmp_path_factory.mktemp("tiny-whisper-ct2"))


@pytest.fixture(scope="session")
def tiny_xvector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random WavLM x-vector speaker model."""
    return build_tiny_xvector(tmp_path_factory.mktemp("tiny-xvector"))


class Events:
    """A list-collecting ``Emit``."""

    def __init__(self) -> None:
        self.items: list[EngineEvent] = []

    async def __call__(self, event: EngineEvent) -> None:
        self.items.append(event)

    def stages(self) -> list[str]:
        return [str(e.data.get("stage")) for e in self.items if e.kind == "progress"]


def two_voices_wav(rate: int = 16_000) -> bytes:
    """0.9 s of WAV: a low buzz, a short pause, then a high whistle (two "speakers")."""
    samples: list[float] = []
    for index in range(int(0.4 * rate)):
        t = index / rate
        samples.append(0.5 * math.copysign(1.0, math.sin(2 * math.pi * 140 * t)))
    samples.extend([0.0] * int(0.1 * rate))
    for index in range(int(0.4 * rate)):
        t = index / rate
        samples.append(0.5 * math.sin(2 * math.pi * 2_000 * t))
    buffer = BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", int(s * 32767)) for s in samples))
    return buffer.getvalue()
