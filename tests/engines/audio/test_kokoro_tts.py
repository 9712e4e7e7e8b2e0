"""Kokoro text to speech on a tiny random-weight model (real KModel, misaki G2P, voices)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gpubridge.engines.audio.kokoro_tts import KokoroEngine, english_g2p, load_kokoro
from gpubridge.engines.base import BackendConfig, EngineRequest, ModelRef, OutputFile
from gpubridge.errors import InvalidInput
from tests.engines.audio.conftest import collector, stages, wav_info
from tests.support.tiny_kokoro import TINY_KOKORO_VOICES

pytestmark = [pytest.mark.slow]


def request(source: Path, **payload: object) -> EngineRequest:
    return EngineRequest("job-1", "tts-l4", ModelRef("kokoro-82m", str(source)), dict(payload))


@pytest.fixture(scope="module")
def engine() -> KokoroEngine:
    return KokoroEngine(BackendConfig(name="kokoro", type="kokoro", options={"device": "cpu"}))


async def test_speaks_english_text_as_a_24khz_wav_with_progress(
    engine: KokoroEngine, tiny_kokoro_dir: Path
) -> None:
    events, emit = collector()
    result = await engine.run(request(tiny_kokoro_dir, text="Hello world.", voice="af_alloy"), emit)
    audio = result.output["audio"]
    assert isinstance(audio, OutputFile) and audio.content_type == "audio/wav"
    channels, rate, seconds = wav_info(audio.data)
    assert (channels, rate) == (1, 24_000) and seconds > 0
    assert audio.metadata["duration_seconds"] == pytest.approx(seconds, abs=1e-3)
    assert audio.metadata["sampling_rate"] == 24_000 and audio.metadata["voice"] == "af_alloy"
    assert result.usage.outputs == 1 and result.usage.compute_seconds > 0
    assert {"loading_model", "model_loaded", "synthesizing"} <= stages(events)


async def test_speaks_spanish_with_espeak_and_encodes_mp3(
    engine: KokoroEngine, tiny_kokoro_dir: Path
) -> None:
    _, emit = collector()
    payload = {"text": "Hola mundo.", "voice": "ef_dora", "format": "mp3", "speed": 1.5}
    result = await engine.run(request(tiny_kokoro_dir, **payload), emit)
    audio = result.output["audio"]
    assert audio.content_type == "audio/mpeg" and len(audio.data) > 0


async def test_a_voice_the_model_lacks_is_invalid_input(
    engine: KokoroEngine, tiny_kokoro_dir: Path
) -> None:
    _, emit = collector()
    with pytest.raises(InvalidInput):
        await engine.run(request(tiny_kokoro_dir, text="Hi.", voice="am_onyx"), emit)


async def test_loads_every_voice_file_of_the_model_directory(tiny_kokoro_dir: Path) -> None:
    bundle = await asyncio.to_thread(load_kokoro, str(tiny_kokoro_dir), {}, "cpu")
    assert sorted(bundle.voices) == sorted(TINY_KOKORO_VOICES)


@pytest.mark.gpu
async def test_speaks_on_cuda(tiny_kokoro_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    engine = KokoroEngine(BackendConfig(name="k", type="kokoro", options={"device": "cuda"}))
    _, emit = collector()
    result = await engine.run(request(tiny_kokoro_dir, text="Hello.", voice="af_heart"), emit)
    assert wav_info(result.output["audio"].data)[1] == 24_000
    await engine.unload()


@pytest.mark.parametrize(
    ("voice", "text"), [("zf_xiaobei", "你好。"), ("jf_alpha", "こんにちは。")]
)
async def test_speaks_mandarin_and_japanese_through_misaki(
    engine: KokoroEngine, tiny_kokoro_dir: Path, voice: str, text: str
) -> None:
    _, emit = collector()
    result = await engine.run(request(tiny_kokoro_dir, text=text, voice=voice), emit)
    assert wav_info(result.output["audio"].data)[2] > 0


async def test_english_g2p_keeps_punctuation_without_a_spacy_model() -> None:
    g2p = await asyncio.to_thread(english_g2p, False)
    phonemes, _ = g2p("Hello, world (really)!")
    assert "," in phonemes and "(" in phonemes and phonemes.endswith("!")
