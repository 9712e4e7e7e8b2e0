"""MusicGen on a tiny random-weight model (T5 encoder, EnCodec, decoder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpubridge.engines.audio.musicgen import MusicgenEngine
from gpubridge.engines.base import BackendConfig, EngineRequest, ModelRef
from tests.engines.audio.conftest import collector, wav_info
from tests.support.tiny_musicgen import TINY_MUSICGEN_RATE

pytestmark = [pytest.mark.slow]


def request(source: Path, **payload: object) -> EngineRequest:
    model = ModelRef("musicgen-small", str(source))
    return EngineRequest("job-1", "musicgen-l4", model, dict(payload))


def engine(device: str = "cpu") -> MusicgenEngine:
    return MusicgenEngine(BackendConfig(name="mg", type="musicgen", options={"device": device}))


async def test_generates_the_requested_duration_with_step_progress(tiny_musicgen_dir: Path) -> None:
    events, emit = collector()
    payload = {"prompt": "warm piano beat", "duration_seconds": 1, "seed": 1, "top_k": 10}
    result = await engine().run(request(tiny_musicgen_dir, **payload), emit)
    channels, rate, seconds = wav_info(result.output["audio"].data)
    assert (channels, rate) == (1, TINY_MUSICGEN_RATE)
    assert seconds == pytest.approx(1.0, abs=0.05)
    assert result.output["audio"].metadata["duration_seconds"] == pytest.approx(1.0, abs=0.05)
    steps = [e.data for e in events if e.data.get("stage") == "generating"]
    assert len(steps) >= 2 and steps[-1]["step"] == steps[-1]["total"]
    assert result.usage.outputs == 1 and result.usage.compute_seconds > 0


async def test_greedy_decoding_without_guidance_encodes_flac(tiny_musicgen_dir: Path) -> None:
    _, emit = collector()
    payload = {
        "prompt": "calm guitar",
        "duration_seconds": 0.5,
        "temperature": 0,
        "guidance_scale": 1,
        "format": "flac",
    }
    result = await engine().run(request(tiny_musicgen_dir, **payload), emit)
    assert result.output["audio"].content_type == "audio/flac"
    assert result.output["audio"].metadata["duration_seconds"] == pytest.approx(0.5, abs=0.05)


@pytest.mark.gpu
async def test_generates_on_cuda(tiny_musicgen_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cuda = engine("cuda")
    _, emit = collector()
    result = await cuda.run(request(tiny_musicgen_dir, prompt="drums", duration_seconds=1), emit)
    assert wav_info(result.output["audio"].data)[2] == pytest.approx(1.0, abs=0.05)
    await cuda.unload()
