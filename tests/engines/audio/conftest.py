"""Tiny random-weight audio models, built once per test run."""

from __future__ import annotations

import io
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.base import EngineEvent
from tests.support.tiny_bark import build_tiny_bark
from tests.support.tiny_kokoro import build_tiny_kokoro
from tests.support.tiny_musicgen import build_tiny_musicgen
from tests.support.tiny_speecht5 import build_tiny_hifigan, build_tiny_speecht5
from tests.support.tiny_whisper import build_tiny_xvector


@pytest.fixture(scope="session")
def tiny_kokoro_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_kokoro(tmp_path_factory.mktemp("kokoro"))


@pytest.fixture(scope="session")
def tiny_bark_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bark(tmp_path_factory.mktemp("bark"))


@pytest.fixture(scope="session")
def tiny_musicgen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_musicgen(tmp_path_factory.mktemp("musicgen"))


@pytest.fixture(scope="session")
def tiny_clone_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("voice-clone")
    return {
        "tts": build_tiny_speecht5(root / "tts"),
        "vocoder": build_tiny_hifigan(root / "vocoder"),
        "speaker_encoder": build_tiny_xvector(root / "xvector", embedding_dim=512),
    }


def wav_info(data: bytes) -> tuple[int, int, float]:
    """(channels, sampling rate, seconds) of WAV bytes."""
    with wave.open(io.BytesIO(data)) as clip:
        return clip.getnchannels(), clip.getframerate(), clip.getnframes() / clip.getframerate()


def collector() -> tuple[list[EngineEvent], Callable[[EngineEvent], Any]]:
    """A list and an ``Emit`` appending to it."""
    events: list[EngineEvent] = []

    async def emit(event: EngineEvent) -> None:
        events.append(event)

    return events, emit


def stages(events: list[EngineEvent]) -> set[str]:
    return {str(e.data.get("stage")) for e in events if e.kind == "progress"}
