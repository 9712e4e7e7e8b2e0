"""Expressive speech with Suno Bark through transformers (``BarkModel`` + ``BarkProcessor``).

Non-speech cues such as ``[laughter]``, ``[sighs]`` or ``♪`` are ordinary text to Bark. Speaker
presets are read only from the model directory: the processor's ``speaker_embeddings_path.json``
entries, or ``<name>.npz`` files (``semantic_prompt``, ``coarse_prompt``, ``fine_prompt``) under
the directory or its ``speaker_embeddings/`` folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpubridge.engines.audio.common import (
    StepCounter,
    clip_result,
    model_dir,
    output_format,
    required_text,
    split_sentences,
)
from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineEvent,
    EngineRequest,
    EngineResult,
    ModelRef,
)
from gpubridge.engines.diffusion.generation import pick_seed
from gpubridge.engines.local import from_pretrained, pick_device, progress_event, resolve_source
from gpubridge.engines.resident_engine import ResidentEngine
from gpubridge.errors import InvalidInput

PRESET_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")
MAX_PIECE_CHARS = 220


@dataclass
class BarkBundle:
    """A loaded Bark model, its processor and the speaker presets found beside it."""

    model: Any
    processor: Any
    presets: dict[str, dict[str, Path]]
    sampling_rate: int


def find_presets(
    root: Path, speaker_embeddings: dict[str, Any] | None
) -> dict[str, dict[str, Path]]:
    """Speaker presets whose three prompt files exist inside ``root``, by name."""
    presets: dict[str, dict[str, Path]] = {}
    for name, paths in (speaker_embeddings or {}).items():
        if not isinstance(paths, dict):
            continue
        prompts = {k: Path(os.path.abspath(root / str(paths.get(k, "")))) for k in PRESET_KEYS}
        base = Path(os.path.abspath(root))
        if all(f.is_file() and f.is_relative_to(base) for f in prompts.values()):
            presets[name] = prompts
    folder = root / "speaker_embeddings"
    files = [*sorted(folder.rglob("*.npz")), *sorted(root.glob("*.npz"))]
    for npz in files:
        base = folder if npz.is_relative_to(folder) else root
        presets.setdefault(npz.relative_to(base).with_suffix("").as_posix(), {"npz": npz})
    return presets


def load_bark(source: str, device: str | None) -> BarkBundle:
    """Load ``BarkModel`` and ``BarkProcessor`` from a directory or a cached hub id."""
    from transformers import BarkModel, BarkProcessor

    location, local_only = resolve_source(source)
    root = model_dir(source)
    processor = from_pretrained(BarkProcessor, str(root), local_files_only=True)
    model: Any = BarkModel.from_pretrained(location, local_files_only=local_only)
    model = model.to(pick_device(device)).eval()
    rate = int(getattr(model.generation_config, "sample_rate", 0) or 24_000)
    return BarkBundle(model, processor, find_presets(root, processor.speaker_embeddings), rate)


def preset_arrays(preset: dict[str, Path]) -> dict[str, Any]:
    """The three prompt arrays of a speaker preset."""
    import numpy as np

    if "npz" in preset:
        with np.load(preset["npz"], allow_pickle=False) as data:
            return {k: data[k] for k in PRESET_KEYS}
    return {k: np.load(preset[k], allow_pickle=False) for k in PRESET_KEYS}


def generate_speech(
    bundle: BarkBundle,
    text: str,
    voice: str | None,
    temperature: float,
    seed: int,
    send: Callable[[EngineEvent], None],
) -> Any:
    """Text -> semantic -> coarse -> fine tokens -> EnCodec audio (mono float samples).

    Bark renders about 13 seconds at a time, so longer text is spoken a few sentences at a
    time in the same voice and the pieces are joined.
    """
    import numpy as np
    import torch

    history = preset_arrays(bundle.presets[voice]) if voice else None
    pieces = split_sentences(text, MAX_PIECE_CHARS)
    torch.manual_seed(seed)
    parts = []
    for index, piece in enumerate(pieces, start=1):
        parts.append(_generate_piece(bundle, piece, history, temperature, send))
        send(progress_event("pieces", index, len(pieces)))
    return np.concatenate(parts)


def _generate_piece(
    bundle: BarkBundle,
    text: str,
    history: dict[str, Any] | None,
    temperature: float,
    send: Callable[[EngineEvent], None],
) -> Any:
    import torch

    inputs = bundle.processor(text, voice_preset=history, return_tensors="pt")
    device = bundle.model.device
    inputs = inputs.to(device)
    if "history_prompt" in inputs:
        prompt = inputs["history_prompt"]
        inputs["history_prompt"] = {k: prompt[k].to(device) for k in PRESET_KEYS}
    config = bundle.model.generation_config
    stage = getattr(config, "semantic_config", None) or {}
    limit = stage.get("max_new_tokens") if isinstance(stage, dict) else stage.max_new_tokens
    semantic_total = int(limit or 768)
    semantic = StepCounter(send, "semantic", semantic_total, every=16)
    coarse = StepCounter(send, "coarse", semantic_total * 3, every=32)
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    )
    with torch.inference_mode():
        audio = bundle.model.generate(
            **inputs, semantic_streamer=semantic, coarse_streamer=coarse, **sampling
        )
    return audio.detach().float().cpu().numpy().reshape(-1)


class BarkEngine(ResidentEngine[BarkBundle]):
    """An ``Engine`` rendering expressive speech with Bark (``suno/bark``, ``suno/bark-small``).

    Options: ``device``.
    """

    def load_model(self, ref: ModelRef) -> BarkBundle:
        return load_bark(ref.source, self.device)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        payload = request.input
        text = required_text(payload, "text")
        voice = payload.get("voice") or request.model.options.get("voice")
        temperature = float(payload.get("temperature", 0.7))
        seed = pick_seed(payload.get("seed"))
        fmt = output_format(payload)
        bundle = await self.model(request.model, emit)
        if voice is not None and voice not in bundle.presets:
            known = sorted(bundle.presets)[:20]
            raise InvalidInput(
                f"voice {voice!r} is not a speaker preset of this model (e.g. {known})",
                violations=[{"path": "voice", "message": "unknown speaker preset"}],
            )
        return await clip_result(
            self.name,
            emit,
            lambda send: generate_speech(bundle, text, voice, temperature, seed, send),
            "Bark generation",
            bundle.sampling_rate,
            fmt,
            voice=voice,
        )


def create(config: BackendConfig, context: EngineContext) -> BarkEngine:
    """The ``bark`` backend type."""
    return BarkEngine(config, context)
