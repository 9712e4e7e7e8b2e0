"""What the local audio engines share: model directories, text and format inputs, step progress,
and the generated clip as the job's result."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpubridge.engines.base import Emit, EngineEvent, EngineResult, OutputFile, Usage
from gpubridge.engines.local import progress_event, resolve_source, threadsafe_emit
from gpubridge.engines.media import audio_file
from gpubridge.engines.resident_engine import timed
from gpubridge.errors import BackendError, InvalidInput

AUDIO_FORMATS = ("wav", "mp3", "flac", "opus")
SENTENCE_END = "(?<=[.!?\u2026])\\s+|(?<=[\u3002\uff01\uff1f])\\s*|\n+"
"""Where a sentence ends: Latin punctuation before a space, CJK punctuation, a line break."""


def model_dir(source: str) -> Path:
    """The local directory of ``source``: itself, or the cached hub snapshot (offline-safe)."""
    location, local_only = resolve_source(source)
    if Path(location).is_dir():
        return Path(location)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(location, local_files_only=local_only))


def required_text(payload: dict[str, Any], field: str) -> str:
    """The request's non-blank text ``field``, stripped."""
    text = str(payload.get(field) or "").strip()
    if not text:
        raise InvalidInput(f"{field} is required", code="invalid_input")
    return text


def output_format(payload: dict[str, Any], allowed: tuple[str, ...] = AUDIO_FORMATS) -> str:
    """The requested audio ``format`` (default wav), checked against ``allowed``."""
    fmt = str(payload.get("format") or "wav").lower()
    if fmt not in allowed:
        raise InvalidInput(
            f"format must be one of {list(allowed)}",
            violations=[{"path": "format", "message": f"must be one of {list(allowed)}"}],
        )
    return fmt


def encode_output(samples: Any, sampling_rate: int, fmt: str, **metadata: Any) -> OutputFile:
    """The generated clip as an ``OutputFile`` (duration and sampling rate in its metadata)."""
    import numpy as np

    data = np.asarray(samples, dtype=np.float32).reshape(-1)
    if data.size == 0:
        raise BackendError("the model produced no audio")
    peak = float(np.max(np.abs(data)))
    if not np.isfinite(peak):
        raise BackendError("the model produced invalid audio (NaN or infinite samples)")
    if peak > 1.0:
        data = data / peak
    return audio_file(data, sampling_rate, fmt, **metadata)


async def clip_result(
    name: str,
    emit: Emit,
    work: Callable[[Callable[[EngineEvent], None]], Any],
    action: str,
    sampling_rate: int,
    fmt: str,
    **metadata: Any,
) -> EngineResult:
    """Run ``work(send)`` (it returns mono samples; ``send`` reports progress through ``emit``
    from the worker thread) timed in a worker thread, then encode its clip: the job's result,
    one output billed by its compute seconds. A failure of ``work`` becomes
    ``BackendError("<name>: <action> failed: ...")``."""
    send = threadsafe_emit(emit)
    samples, seconds = await timed(name, lambda: work(send), action)
    audio = await asyncio.to_thread(encode_output, samples, sampling_rate, fmt, **metadata)
    return EngineResult(output={"audio": audio}, usage=Usage(outputs=1, compute_seconds=seconds))


class StepCounter:
    """Reports one progress event every ``every`` generated steps.

    Use it as a ``generate`` streamer (transformers calls ``put`` once with the prompt, then once
    per new token, and ``end``), or call ``step`` from a logits processor.
    """

    def __init__(
        self, send: Callable[[EngineEvent], None], stage: str, total: int, every: int = 1
    ) -> None:
        self._send = send
        self._stage = stage
        self._total = max(int(total), 1)
        self._every = max(int(every), 1)
        self._prompt_seen = False
        self.steps = 0

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.step()

    def step(self) -> None:
        """Count one generated step."""
        self.steps += 1
        if self.steps % self._every == 0 or self.steps == self._total:
            self._send(progress_event(self._stage, min(self.steps, self._total), self._total))

    def end(self) -> None:
        if self.steps % self._every != 0 and self.steps < self._total:
            self._send(progress_event(self._stage, self.steps, self._total))


def split_sentences(text: str, max_chars: int) -> list[str]:
    """``text`` cut into pieces of at most ``max_chars`` characters, at sentence ends when it
    can (then at spaces, then anywhere), for models that only render short passages."""
    import re

    pieces: list[str] = []
    current = ""
    for sentence in re.split(SENTENCE_END, text.strip()):
        while len(sentence) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > max_chars:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return [p for p in pieces if p]
