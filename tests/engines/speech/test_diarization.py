"""Diarized transcription: VAD, x-vector embeddings of a tiny random WavLM, clustering, labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpubridge.engines.base import EngineRequest, ModelRef
from gpubridge.engines.media import decode_audio
from gpubridge.engines.speech import speakers as spk
from gpubridge.engines.speech.diarization import DiarizedWhisper, create, speaker_counts, speaker_of
from gpubridge.engines.speech.vad import speech_regions
from gpubridge.errors import InvalidInput
from tests.engines.speech.conftest import two_voices_wav
from tests.engines.speech.test_faster_whisper_stt import FAST
from tests.support.engine_calls import Events, engine, media_input, request

SPEECH_WINDOWS = {"vad": "energy", "window_s": 0.2, "hop_s": 0.1}


def samples() -> Any:
    return decode_audio(media_input("audio_url", two_voices_wav(), "audio/wav"))


def test_energy_vad_finds_the_two_sounds_and_silero_runs_on_them() -> None:
    regions = speech_regions(samples(), "energy", min_silence_s=0.05)
    assert len(regions) == 2
    assert regions[0][0] == pytest.approx(0.0, abs=0.03)
    assert regions[1][0] == pytest.approx(0.5, abs=0.03)
    assert isinstance(speech_regions(samples(), "silero"), list)


def test_windows_cover_each_region() -> None:
    spans = spk.windows([(0.0, 1.0), (2.0, 2.3)], length_s=0.4, hop_s=0.2)
    assert spans[0] == (0.0, 0.4)
    assert spans[-2] == (0.6, 1.0)
    assert spans[-1] == (2.0, 2.3)


def test_clustering_honours_exact_minimum_and_maximum_counts() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8)
    points = np.concatenate([c + 0.01 * rng.standard_normal((4, 8)) for c in centres])
    assert len(set(spk.cluster(points, spk.SpeakerCounts(), threshold=0.3))) == 3
    assert len(set(spk.cluster(points, spk.SpeakerCounts(exact=2), threshold=0.3))) == 2
    assert len(set(spk.cluster(points, spk.SpeakerCounts(maximum=2), threshold=0.3))) == 2
    assert len(set(spk.cluster(points, spk.SpeakerCounts(minimum=4), threshold=0.3))) == 4
    assert spk.cluster(points[:1], spk.SpeakerCounts(exact=3), threshold=0.3) == [0]


def test_turns_are_numbered_by_first_appearance_and_segments_take_the_most_overlap() -> None:
    turns = spk.turns([(1.0, 2.0), (0.0, 1.0), (1.5, 2.5)], [5, 7, 5])
    assert turns == [spk.Turn(0.0, 1.0, 0), spk.Turn(1.0, 2.5, 1)]
    assert speaker_of(0.2, 1.4, turns) == 0
    assert speaker_of(0.8, 2.0, turns) == 1
    assert speaker_of(3.0, 3.5, turns) == 1


def test_contradictory_speaker_counts_are_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        speaker_counts({"min_speakers": 3, "max_speakers": 2})
    assert speaker_counts({"num_speakers": 2}).exact == 2


def engine_for(transcriber: str = "faster-whisper", **options: Any) -> DiarizedWhisper:
    values = {**FAST, **SPEECH_WINDOWS, "transcriber": transcriber, **options}
    if transcriber == "faster-whisper":
        values["no_speech_threshold"] = None
    return engine(create, "diarized-whisper", name="dw", **values)


def diarize_request(whisper: Path, ct2: Path, xvector: Path, **data: Any) -> EngineRequest:
    options = {"ctranslate2_source": str(ct2), "speaker_model": str(xvector)}
    audio = media_input("audio_url", two_voices_wav(), "audio/wav")
    model = ModelRef("tiny", str(whisper), options)
    return request("whisperx", data, media=audio, model=model, job_id="job")


@pytest.fixture(scope="module")
def diarizer() -> DiarizedWhisper:
    return engine_for()


@pytest.mark.slow
async def test_every_segment_and_word_gets_one_of_the_requested_speakers(
    diarizer: DiarizedWhisper,
    tiny_whisper_dir: Path,
    tiny_whisper_ct2_dir: Path,
    tiny_xvector_dir: Path,
) -> None:
    events = Events()
    req = diarize_request(tiny_whisper_dir, tiny_whisper_ct2_dir, tiny_xvector_dir, num_speakers=2)
    result = await diarizer.run(req, events)
    output = result.output
    assert [s["id"] for s in output["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]
    assert all(s["speaking_seconds"] > 0 for s in output["speakers"])
    assert output["segments"]
    ids = {s["id"] for s in output["speakers"]}
    for segment in output["segments"]:
        assert segment["speaker"] in ids
        assert all(word["speaker"] in ids for word in segment["words"])
    assert result.usage.audio_seconds == pytest.approx(0.9)
    assert result.usage.completion_tokens > 0
    assert "diarizing" in events.stages()


@pytest.mark.slow
async def test_max_speakers_caps_the_count_and_diarize_false_skips_it(
    diarizer: DiarizedWhisper,
    tiny_whisper_dir: Path,
    tiny_whisper_ct2_dir: Path,
    tiny_xvector_dir: Path,
) -> None:
    capped = diarize_request(
        tiny_whisper_dir, tiny_whisper_ct2_dir, tiny_xvector_dir, max_speakers=1
    )
    output = (await diarizer.run(capped, Events())).output
    assert [s["id"] for s in output["speakers"]] == ["SPEAKER_00"]
    plain = diarize_request(
        tiny_whisper_dir,
        tiny_whisper_ct2_dir,
        tiny_xvector_dir,
        diarize=False,
        timestamps="segment",
    )
    output = (await diarizer.run(plain, Events())).output
    assert output["speakers"] == []
    assert all("speaker" not in s and "words" not in s for s in output["segments"])


@pytest.mark.slow
async def test_the_transformers_transcriber_works_behind_diarization(
    tiny_whisper_dir: Path, tiny_whisper_ct2_dir: Path, tiny_xvector_dir: Path
) -> None:
    transformers = engine_for("transformers-whisper")
    req = diarize_request(tiny_whisper_dir, tiny_whisper_ct2_dir, tiny_xvector_dir, min_speakers=2)
    output = (await transformers.run(req, Events())).output
    assert len(output["speakers"]) >= 2
    assert all(s["speaker"].startswith("SPEAKER_") for s in output["segments"])
    await transformers.unload()


@pytest.mark.slow
@pytest.mark.gpu
async def test_diarizes_on_cuda(
    tiny_whisper_dir: Path, tiny_whisper_ct2_dir: Path, tiny_xvector_dir: Path
) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cuda = engine_for(device="cuda")
    req = diarize_request(tiny_whisper_dir, tiny_whisper_ct2_dir, tiny_xvector_dir, num_speakers=2)
    output = (await cuda.run(req, Events())).output
    assert len(output["speakers"]) == 2
    await cuda.unload()
