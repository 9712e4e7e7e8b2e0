"""Zero-shot voice cloning: SpeechT5 text to speech conditioned on the x-vector of a reference
recording.

The model's ``source`` is the SpeechT5 TTS checkpoint (``SpeechT5ForTextToSpeech`` +
``SpeechT5Processor``); model options name the ``vocoder`` (``SpeechT5HifiGan``) and the
``speaker_encoder`` (a transformers x-vector model such as ``WavLMForXVector``), which turns the
reference audio into the 512-dimensional speaker embedding SpeechT5 is conditioned on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpubridge.engines.audio.common import clip_result, output_format, split_sentences
from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineEvent,
    EngineRequest,
    EngineResult,
    ModelRef,
)
from gpubridge.engines.local import from_pretrained, pick_device, progress_event, resolve_source
from gpubridge.engines.media import decode_audio, require
from gpubridge.engines.resident_engine import ResidentEngine
from gpubridge.errors import InvalidInput

PREVIEW_TEXT = "Hello! This is a preview of the cloned voice, reading a short sentence."
MAX_PIECE_CHARS = 200
MIN_REFERENCE_SECONDS = 0.5
MAX_REFERENCE_SECONDS = 60.0
DEFAULT_VOCODER = "microsoft/speecht5_hifigan"
DEFAULT_SPEAKER_ENCODER = "microsoft/wavlm-base-plus-sv"


@dataclass
class CloneBundle:
    """SpeechT5 with its processor and vocoder, and the speaker (x-vector) encoder."""

    processor: Any
    model: Any
    vocoder: Any
    features: Any
    speaker_encoder: Any
    sampling_rate: int


def _pretrained(cls: Any, source: str, device: str) -> Any:
    location, local_only = resolve_source(source)
    return cls.from_pretrained(location, local_files_only=local_only).to(device).eval()


def load_clone(source: str, options: dict[str, Any], device: str | None) -> CloneBundle:
    """Load the TTS model, vocoder and speaker encoder named by ``source`` and ``options``."""
    from transformers import (
        AutoFeatureExtractor,
        SpeechT5ForTextToSpeech,
        SpeechT5HifiGan,
        SpeechT5Processor,
        WavLMForXVector,
    )

    where = pick_device(device)
    location, local_only = resolve_source(source)
    processor = SpeechT5Processor.from_pretrained(location, local_files_only=local_only)
    encoder_source = str(options.get("speaker_encoder") or DEFAULT_SPEAKER_ENCODER)
    encoder_location, encoder_local = resolve_source(encoder_source)
    features = from_pretrained(
        AutoFeatureExtractor, encoder_location, local_files_only=encoder_local
    )
    vocoder = _pretrained(SpeechT5HifiGan, str(options.get("vocoder") or DEFAULT_VOCODER), where)
    return CloneBundle(
        processor=processor,
        model=_pretrained(SpeechT5ForTextToSpeech, source, where),
        vocoder=vocoder,
        features=features,
        speaker_encoder=_pretrained(WavLMForXVector, encoder_source, where),
        sampling_rate=int(getattr(vocoder.config, "sampling_rate", 16_000)),
    )


def speaker_embedding(bundle: CloneBundle, reference: Any) -> Any:
    """The unit-length x-vector of ``reference`` (16 kHz mono samples), shape (1, dim)."""
    import torch

    rate = int(getattr(bundle.features, "sampling_rate", 16_000))
    inputs = bundle.features(reference, sampling_rate=rate, return_tensors="pt")
    inputs = inputs.to(bundle.speaker_encoder.device)
    with torch.inference_mode():
        vector = bundle.speaker_encoder(**inputs).embeddings
    return torch.nn.functional.normalize(vector, dim=-1)


def clone_speech(
    bundle: CloneBundle, reference: Any, text: str, send: Callable[[EngineEvent], None]
) -> Any:
    """Embed the reference voice, then for each few sentences predict a spectrogram and
    vocode it; the pieces are joined."""
    import numpy as np
    import torch

    embedding = speaker_embedding(bundle, reference).to(bundle.model.device)
    pieces = split_sentences(text, MAX_PIECE_CHARS)
    total = len(pieces) + 1
    send(progress_event("speaker_embedding", 1, total))
    limit = int(getattr(bundle.model.config, "max_text_positions", 600))
    parts = []
    for index, piece in enumerate(pieces, start=2):
        inputs = bundle.processor(text=piece, return_tensors="pt")
        input_ids = inputs["input_ids"][:, :limit].to(bundle.model.device)
        with torch.inference_mode():
            spectrogram = bundle.model.generate_speech(input_ids, embedding)
            speech = bundle.vocoder(spectrogram.to(bundle.vocoder.device))
        parts.append(speech.detach().float().cpu().numpy().reshape(-1))
        send(progress_event("speaking", index, total))
    return np.concatenate(parts)


class VoiceCloneEngine(ResidentEngine[CloneBundle]):
    """An ``Engine`` speaking text in the voice of a reference recording (SpeechT5 + x-vector).

    Options: ``device``; model options: ``vocoder``, ``speaker_encoder`` (sources).
    """

    def load_model(self, ref: ModelRef) -> CloneBundle:
        return load_clone(ref.source, ref.options, self.device)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        payload = request.input
        text = str(payload.get("text") or "").strip() or PREVIEW_TEXT
        fmt = output_format(payload)
        media = require(request.media, "audio_url")
        reference = await asyncio.to_thread(decode_audio, media, 16_000)
        seconds_in = reference.shape[0] / 16_000
        if not MIN_REFERENCE_SECONDS <= seconds_in <= MAX_REFERENCE_SECONDS:
            raise InvalidInput(
                f"the reference recording must last {MIN_REFERENCE_SECONDS:g} to "
                f"{MAX_REFERENCE_SECONDS:g} seconds (got {seconds_in:.1f})",
                code="invalid_media",
            )
        bundle = await self.model(request.model, emit)
        return await clip_result(
            self.name,
            emit,
            lambda send: clone_speech(bundle, reference, text, send),
            "voice cloning",
            bundle.sampling_rate,
            fmt,
        )


def create(config: BackendConfig, context: EngineContext) -> VoiceCloneEngine:
    """The ``voice-clone`` backend type."""
    return VoiceCloneEngine(config, context)
