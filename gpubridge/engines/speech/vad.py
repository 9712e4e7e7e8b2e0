"""Voice activity detection: where in 16 kHz mono audio someone speaks.

``silero`` runs the Silero VAD ONNX model that faster-whisper ships (through onnxruntime);
``energy`` thresholds short-frame loudness against the recording's own level and needs no model.
NumPy and faster-whisper are imported inside the functions, which run in worker threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

Region = tuple[float, float]
VadMethod = Literal["silero", "energy"]
SAMPLING_RATE = 16_000


def speech_regions(
    audio: NDArray[np.float32],
    method: VadMethod = "silero",
    *,
    min_silence_s: float = 0.3,
    min_speech_s: float = 0.2,
) -> list[Region]:
    """Speech regions ``(start, end)`` in seconds, in time order."""
    if method == "silero":
        return _silero(audio, min_silence_s, min_speech_s)
    if method == "energy":
        return _energy(audio, min_silence_s, min_speech_s)
    raise ValueError(f"unknown VAD method {method!r}")


def _silero(audio: NDArray[np.float32], min_silence_s: float, min_speech_s: float) -> list[Region]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        min_silence_duration_ms=int(min_silence_s * 1000),
        min_speech_duration_ms=int(min_speech_s * 1000),
    )
    stamps = get_speech_timestamps(audio, options, sampling_rate=SAMPLING_RATE)
    return [(s["start"] / SAMPLING_RATE, s["end"] / SAMPLING_RATE) for s in stamps]


def _energy(
    audio: NDArray[np.float32],
    min_silence_s: float,
    min_speech_s: float,
    frame_s: float = 0.02,
    below_peak_db: float = 35.0,
    floor_db: float = -50.0,
) -> list[Region]:
    import numpy as np

    frame = int(frame_s * SAMPLING_RATE)
    count = len(audio) // frame
    if count == 0:
        return []
    frames = audio[: count * frame].reshape(count, frame).astype(np.float64)
    level = 20.0 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-10)
    voiced = level > max(floor_db, float(np.percentile(level, 95)) - below_peak_db)
    regions: list[Region] = []
    start: int | None = None
    for index, active in enumerate([*voiced.tolist(), False]):
        if active and start is None:
            start = index
        elif not active and start is not None:
            regions.append((start * frame_s, index * frame_s))
            start = None
    merged: list[Region] = []
    for region in regions:
        if merged and region[0] - merged[-1][1] < min_silence_s:
            merged[-1] = (merged[-1][0], region[1])
        else:
            merged.append(region)
    return [(round(a, 3), round(b, 3)) for a, b in merged if b - a >= min_speech_s]
