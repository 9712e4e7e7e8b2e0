"""Tiny random Whisper (transformers and CTranslate2 forms) and WavLM x-vector models, built once
per test run, and speech with two voices."""

from __future__ import annotations

import math
import struct
import wave
from io import BytesIO
from pathlib import Path

import pytest

from tests.support.engine_calls import model_dir_fixture
from tests.support.tiny_whisper import (
    build_tiny_whisper,
    build_tiny_xvector,
    convert_to_ctranslate2,
)

tiny_whisper_dir = model_dir_fixture(build_tiny_whisper, "tiny-whisper")
"""A tiny random multilingual Whisper checkpoint with its processor."""
tiny_xvector_dir = model_dir_fixture(build_tiny_xvector, "tiny-xvector")
"""A tiny random WavLM x-vector speaker model."""


@pytest.fixture(scope="session")
def tiny_whisper_ct2_dir(tmp_path_factory: pytest.TempPathFactory, tiny_whisper_dir: Path) -> Path:
    """The same checkpoint converted to CTranslate2 by its converter."""
    return convert_to_ctranslate2(tiny_whisper_dir, tmp_path_factory.mktemp("tiny-whisper-ct2"))


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
