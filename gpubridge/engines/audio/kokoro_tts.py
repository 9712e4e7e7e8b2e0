"""Text to speech with Kokoro-82M through the ``kokoro`` package (``KModel`` + ``KPipeline``).

Weights, config and voices come from one model directory (or a cached hub snapshot):
``config.json``, a ``*.pth`` state dict and ``voices/<name>.pt``. Text becomes phonemes with
misaki: English uses misaki's lexicon with spaCy's ``en_core_web_sm`` tagger when it is installed,
else a blank spaCy tokenizer (no model download), with espeak-ng (bundled by ``espeakng-loader``)
for unknown words; Spanish, French, Hindi, Italian and Portuguese use espeak-ng; Japanese uses
misaki's cutlet G2P (fugashi with unidic-lite; pyopenjtalk importable) and Mandarin misaki's
pinyin G2P (jieba, pypinyin, cn2an), all without downloads at run time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpubridge.engines.audio.common import clip_result, model_dir, output_format, required_text
from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
    ModelRef,
)
from gpubridge.engines.local import pick_device, progress_event
from gpubridge.engines.resident_engine import ResidentEngine
from gpubridge.errors import BackendError, InvalidInput

if TYPE_CHECKING:
    from collections.abc import Callable

    from gpubridge.engines.base import EngineEvent

SAMPLING_RATE = 24_000
ESPEAK_LANGUAGES = {"e": "es", "f": "fr-fr", "h": "hi", "i": "it", "p": "pt-br"}
LANGUAGES = {"a", "b", "j", "z", *ESPEAK_LANGUAGES}
BRACKET_TAGS = {"(": "-LRB-", ")": "-RRB-"}


@dataclass
class KokoroBundle:
    """A loaded Kokoro model, its voice files, and one quiet G2P pipeline per language."""

    model: Any
    voices: dict[str, Path]
    repo_id: str
    pipelines: dict[str, Any] = field(default_factory=dict)
    packs: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    g2p_lock: threading.Lock = field(default_factory=threading.Lock)
    """Phonemizers (spaCy, espeak-ng through ctypes) are not shared across threads."""


def load_kokoro(source: str, options: dict[str, Any], device: str | None) -> KokoroBundle:
    """Load ``config.json``, the ``.pth`` weights (option ``weights`` names one) and voices."""
    from kokoro import KModel

    root = model_dir(source)
    weights = options.get("weights")
    candidates = [root / weights] if weights else sorted(root.glob("*.pth"))
    if not candidates or not candidates[0].is_file():
        raise FileNotFoundError(f"no Kokoro .pth weights in {root}")
    voices = {p.stem: p for p in sorted((root / "voices").glob("*.pt"))}
    if not voices:
        raise FileNotFoundError(f"no voices/*.pt in {root}")
    model = KModel(repo_id=source, config=str(root / "config.json"), model=str(candidates[0]))
    model = model.to(pick_device(device)).eval()
    return KokoroBundle(model=model, voices=voices, repo_id=source)


def english_g2p(british: bool) -> Any:
    """misaki's English G2P with espeak-ng for unknown words, never downloading a spaCy model."""
    import spacy
    from misaki import en, espeak

    fallback = espeak.EspeakFallback(british=british)
    if spacy.util.is_package("en_core_web_sm"):
        return en.G2P(british=british, fallback=fallback, unk="")

    class BlankTokenizerG2P(en.G2P):  # type: ignore[misc]
        """Without a tagger, punctuation is tagged by its characters so pauses survive."""

        def __init__(self) -> None:
            self.version = None
            self.british = british
            self.nlp = spacy.blank("en")
            self.lexicon = en.Lexicon(british)
            self.fallback = fallback
            self.unk = ""

        def tokenize(self, text: str, tokens: Any, features: Any) -> Any:
            result = super().tokenize(text, tokens, features)
            for token in result:
                if token.text in BRACKET_TAGS:
                    token.tag = BRACKET_TAGS[token.text]
                elif token.text and all(c in en.PUNCTS for c in token.text):
                    token.tag = "."
            return result

    return BlankTokenizerG2P()


def _g2p(lang: str, repo_id: str) -> Any:
    if lang in "ab":
        return english_g2p(british=lang == "b")
    if lang == "j":
        from misaki import ja

        return ja.JAG2P()
    if lang == "z":
        from misaki import zh

        return zh.ZHG2P(version=None if repo_id.endswith("Kokoro-82M") else "1.1")
    from misaki import espeak

    return espeak.EspeakG2P(language=ESPEAK_LANGUAGES[lang])


def _pipeline(bundle: KokoroBundle, lang: str) -> Any:
    """A quiet ``KPipeline`` (phonemes only) for ``lang``, built once per bundle."""
    from kokoro import KPipeline

    with bundle.lock:
        if lang not in bundle.pipelines:

            class QuietPipeline(KPipeline):  # type: ignore[misc]
                def __init__(self) -> None:
                    self.repo_id = bundle.repo_id
                    self.lang_code = lang
                    self.model = None
                    self.voices: dict[str, Any] = {}
                    self.g2p = _g2p(lang, bundle.repo_id)

            try:
                bundle.pipelines[lang] = QuietPipeline()
            except ImportError as exc:
                raise BackendError(
                    f"phonemizer for language {lang!r} is not installed: {exc}"
                ) from exc
        return bundle.pipelines[lang]


def _voice_pack(bundle: KokoroBundle, voice: str) -> Any:
    import torch

    with bundle.lock:
        if voice not in bundle.packs:
            pack = torch.load(bundle.voices[voice], map_location="cpu", weights_only=True)
            bundle.packs[voice] = pack.to(bundle.model.device)
        return bundle.packs[voice]


def synthesize(
    bundle: KokoroBundle,
    text: str,
    voice: str,
    speed: float,
    send: Callable[[EngineEvent], None],
) -> Any:
    """Phonemize ``text`` into chunks, then render each with the voice; the joined samples."""
    import numpy as np
    import torch
    from kokoro import KPipeline

    pipeline = _pipeline(bundle, voice[0])
    with bundle.g2p_lock:
        chunks = [r.phonemes for r in pipeline(text) if r.phonemes]
    if not chunks:
        raise InvalidInput("text has nothing to pronounce", code="invalid_input")
    pack = _voice_pack(bundle, voice)
    parts = []
    for index, phonemes in enumerate(chunks, start=1):
        with torch.inference_mode():
            output = KPipeline.infer(bundle.model, phonemes, pack, speed)
        parts.append(output.audio.detach().float().cpu().numpy().reshape(-1))
        send(progress_event("synthesizing", index, len(chunks)))
    return np.concatenate(parts)


class KokoroEngine(ResidentEngine[KokoroBundle]):
    """An ``Engine`` speaking text with Kokoro-82M.

    Options: ``device``; model options: ``weights`` (the ``.pth`` file name in the model
    directory, default the only one there).
    """

    def load_model(self, ref: ModelRef) -> KokoroBundle:
        return load_kokoro(ref.source, ref.options, self.device)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        payload = request.input
        text = required_text(payload, "text")
        voice = str(payload.get("voice") or "af_heart")
        speed = float(payload.get("speed") or 1.0)
        fmt = output_format(payload)
        bundle = await self.model(request.model, emit)
        if voice not in bundle.voices or voice[:1] not in LANGUAGES:
            raise InvalidInput(
                f"voice {voice!r} is not one of this model's voices",
                violations=[{"path": "voice", "message": "unknown voice"}],
            )
        return await clip_result(
            self.name,
            emit,
            lambda send: synthesize(bundle, text, voice, speed, send),
            "speech synthesis",
            SAMPLING_RATE,
            fmt,
            voice=voice,
        )


def create(config: BackendConfig, context: EngineContext) -> KokoroEngine:
    """The ``kokoro`` backend type."""
    return KokoroEngine(config, context)
