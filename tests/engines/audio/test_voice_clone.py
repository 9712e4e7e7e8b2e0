"""Voice cloning on tiny random-weight models (SpeechT5, HiFi-GAN, WavLM x-vector)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubridge.engines.audio.voice_clone import VoiceCloneEngine
from gpubridge.engines.base import BackendConfig, EngineRequest, MediaInput, ModelRef
from gpubridge.errors import InvalidInput
from tests.engines.audio.conftest import collector, stages, wav_info
from tests.support.media_server import wav_bytes

pytestmark = [pytest.mark.slow]


def request(dirs: dict[str, Path], reference: bytes, **payload: object) -> EngineRequest:
    options = {"vocoder": str(dirs["vocoder"]), "speaker_encoder": str(dirs["speaker_encoder"])}
    model = ModelRef("speecht5-xvector", str(dirs["tts"]), options)
    media = {"audio_url": MediaInput("audio_url", reference, "audio/wav")}
    return EngineRequest("job-1", "voice-clone", model, dict(payload), media)


def engine(device: str = "cpu") -> VoiceCloneEngine:
    config = BackendConfig(name="clone", type="voice-clone", options={"device": device})
    return VoiceCloneEngine(config)


async def test_speaks_text_in_the_reference_voice_at_16khz(
    tiny_clone_dirs: dict[str, Path],
) -> None:
    events, emit = collector()
    result = await engine().run(request(tiny_clone_dirs, wav_bytes(1.0), text="Hello there."), emit)
    audio = result.output["audio"]
    channels, rate, seconds = wav_info(audio.data)
    assert (channels, rate) == (1, 16_000) and seconds > 0
    assert result.usage.outputs == 1 and result.usage.compute_seconds > 0
    assert {"speaker_embedding", "speaking"} <= stages(events)


async def test_without_text_reads_a_preview_sentence(tiny_clone_dirs: dict[str, Path]) -> None:
    _, emit = collector()
    result = await engine().run(request(tiny_clone_dirs, wav_bytes(0.8, rate=22_050)), emit)
    assert wav_info(result.output["audio"].data)[1] == 16_000


async def test_a_too_short_reference_is_invalid_media(tiny_clone_dirs: dict[str, Path]) -> None:
    _, emit = collector()
    with pytest.raises(InvalidInput):
        await engine().run(request(tiny_clone_dirs, wav_bytes(0.1), text="Hi"), emit)


@pytest.mark.gpu
async def test_clones_on_cuda(tiny_clone_dirs: dict[str, Path]) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cuda = engine("cuda")
    _, emit = collector()
    result = await cuda.run(request(tiny_clone_dirs, wav_bytes(1.0), text="Hello."), emit)
    assert wav_info(result.output["audio"].data)[1] == 16_000
    await cuda.unload()
