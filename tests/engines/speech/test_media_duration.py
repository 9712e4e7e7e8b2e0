"""The playing time of an audio input, read before a job is quoted."""

from __future__ import annotations

import pytest

from gpubridge.engines.base import MediaInput
from gpubridge.engines.media import audio_file, media_duration_seconds
from tests.support.media_server import wav_bytes


def test_the_duration_of_wav_and_encoded_audio_is_read_from_the_container() -> None:
    assert media_duration_seconds(MediaInput("audio_url", wav_bytes(0.8), "audio/wav")) == (
        pytest.approx(0.8)
    )
    flac = audio_file([0.0] * 24_000, 16_000, "flac")
    assert media_duration_seconds(MediaInput("audio_url", flac.data, flac.content_type)) == (
        pytest.approx(1.5, abs=0.05)
    )


def test_unreadable_media_has_no_duration() -> None:
    assert media_duration_seconds(MediaInput("audio_url", b"not audio", "audio/wav")) is None
