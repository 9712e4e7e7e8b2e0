"""Bark expressive speech on a tiny random-weight model (semantic, coarse, fine, EnCodec)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubridge.engines.audio.bark_tts import BarkEngine
from gpubridge.engines.base import BackendConfig, EngineRequest, ModelRef
from gpubridge.errors import InvalidInput
from tests.engines.audio.conftest import collector, stages, wav_info
from tests.support.tiny_bark import TINY_BARK_PRESET

pytestmark = [pytest.mark.slow]


def request(source: Path, **payload: object) -> EngineRequest:
    return EngineRequest("job-1", "bark", ModelRef("bark-small", str(source)), dict(payload))


@pytest.fixture(scope="module")
def engine() -> BarkEngine:
    return BarkEngine(BackendConfig(name="bark", type="bark", options={"device": "cpu"}))


async def test_renders_text_with_cues_and_a_preset_as_24khz_audio(
    engine: BarkEngine, tiny_bark_dir: Path
) -> None:
    events, emit = collector()
    payload = {"text": "hello [laughter] world", "voice": TINY_BARK_PRESET, "seed": 3}
    result = await engine.run(request(tiny_bark_dir, **payload), emit)
    audio = result.output["audio"]
    channels, rate, seconds = wav_info(audio.data)
    assert (channels, rate) == (1, 24_000) and seconds > 0
    assert audio.metadata["voice"] == TINY_BARK_PRESET
    assert result.usage.outputs == 1 and result.usage.compute_seconds > 0
    assert {"semantic", "coarse", "pieces"} <= stages(events)


async def test_the_same_seed_gives_the_same_audio(engine: BarkEngine, tiny_bark_dir: Path) -> None:
    _, emit = collector()
    payload = {"text": "hello world", "seed": 7, "temperature": 0.9}
    first = await engine.run(request(tiny_bark_dir, **payload), emit)
    second = await engine.run(request(tiny_bark_dir, **payload), emit)
    assert first.output["audio"].data == second.output["audio"].data


async def test_an_unknown_preset_is_invalid_input(engine: BarkEngine, tiny_bark_dir: Path) -> None:
    _, emit = collector()
    with pytest.raises(InvalidInput):
        await engine.run(request(tiny_bark_dir, text="hello", voice="v2/xx_speaker_9"), emit)
