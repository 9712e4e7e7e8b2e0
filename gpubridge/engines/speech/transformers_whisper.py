"""Whisper through transformers: ``WhisperForConditionalGeneration`` long-form generation with
segment timestamps, word timestamps from cross-attention alignment, language detection.

torch and transformers are imported inside the functions, which run in worker threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.engines.local import pick_device, progress_event, resolve_source
from gpubridge.engines.resident_engine import pick_dtype
from gpubridge.engines.speech.transcript import Segment, TranscribeOptions, Transcript, Word
from gpubridge.engines.speech.whisper_engine import (
    SAMPLING_RATE,
    Progress,
    WhisperEngine,
)
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from gpubridge.engines.base import BackendConfig, EngineContext, ModelRef
    from gpubridge.engines.speech.whisper_engine import Audio

WINDOW_FRAMES = 3000


@dataclass
class LoadedWhisper:
    model: WhisperForConditionalGeneration
    processor: WhisperProcessor
    device: str

    @property
    def eot(self) -> int:
        return int(self.processor.tokenizer.convert_tokens_to_ids("<|endoftext|>"))


def load_transformers_whisper(source: str, device: str | None) -> LoadedWhisper:
    """Model and processor from a directory, a ``package:`` source or a cached hub id
    (float16 on CUDA, float32 elsewhere)."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    location, local_only = resolve_source(source)
    target = pick_device(device)
    processor = WhisperProcessor.from_pretrained(location, local_files_only=local_only)
    model: Any = WhisperForConditionalGeneration.from_pretrained(
        location, local_files_only=local_only, dtype=pick_dtype(None, target)
    )
    model.to(target)
    model.eval()
    return LoadedWhisper(model, processor, target)


def detect_language(loaded: LoadedWhisper, features: torch.Tensor) -> tuple[str, float]:
    """The most likely language of the first 30 s window and its probability."""
    import torch

    config = loaded.model.generation_config
    lang_to_id: dict[str, int] = dict(getattr(config, "lang_to_id", {}))
    tokens = list(lang_to_id)
    ids = torch.tensor([lang_to_id[t] for t in tokens], device=features.device)
    start = torch.tensor([[config.decoder_start_token_id]], device=features.device)
    with torch.inference_mode():
        encoded = loaded.model.get_encoder()(features[:, :, :WINDOW_FRAMES])
        logits = loaded.model(encoder_outputs=encoded, decoder_input_ids=start).logits
    probs = logits[0, -1].float().index_select(0, ids).softmax(-1)
    best = int(probs.argmax())
    return tokens[best].strip("<|>"), float(probs[best])


def _features(loaded: LoadedWhisper, audio: Audio) -> dict[str, torch.Tensor]:
    extractor = loaded.processor.feature_extractor
    long_form = len(audio) > extractor.n_samples
    inputs = extractor(
        audio,
        sampling_rate=SAMPLING_RATE,
        return_tensors="pt",
        return_attention_mask=True,
        **({"truncation": False, "padding": "longest"} if long_form else {}),
    )
    dtype = loaded.model.dtype
    return {
        "input_features": inputs.input_features.to(loaded.device, dtype),
        "attention_mask": inputs.attention_mask.to(loaded.device),
    }


class TransformersWhisperEngine(WhisperEngine[LoadedWhisper]):
    """An ``Engine`` transcribing with transformers' Whisper generation.

    Backend options: ``device``, ``max_new_tokens``, ``num_beams`` (default 1).
    """

    runtime = "transformers-whisper"

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        self.num_beams = int(self.options.get("num_beams", 1))

    def load_model(self, ref: ModelRef) -> LoadedWhisper:
        return load_transformers_whisper(self.source_of(ref), self.device)

    def transcribe_audio(
        self, model: LoadedWhisper, audio: Audio, options: TranscribeOptions, progress: Progress
    ) -> Transcript:
        import torch

        config = model.model.generation_config
        inputs = _features(model, audio)
        language, probability = self._language(model, inputs["input_features"], options)
        kwargs: dict[str, Any] = {
            "task": options.task,
            "return_timestamps": options.timestamps != "none",
            "return_segments": True,
            "return_token_timestamps": options.words,
            "num_beams": self.num_beams,
        }
        if getattr(config, "is_multilingual", False):
            kwargs["language"] = language
        else:
            kwargs.pop("task")
        schedule = self.temperatures(options)
        kwargs["temperature"] = schedule if len(schedule) > 1 else schedule[0]
        kwargs["do_sample"] = options.temperature > 0
        if len(schedule) > 1:
            kwargs.update(compression_ratio_threshold=1.35, logprob_threshold=-1.0)
        if self.max_new_tokens:
            kwargs["max_new_tokens"] = self.max_new_tokens
        if options.prompt:
            prompt = model.processor.get_prompt_ids(options.prompt, return_tensors="pt")
            kwargs["prompt_ids"] = prompt.to(model.device)
        progress(progress_event("transcribing", 0, 1))
        with torch.inference_mode():
            generated = model.model.generate(**inputs, **kwargs)
        progress(progress_event("transcribing", 1, 1))
        result = Transcript(
            language=language,
            duration_seconds=len(audio) / SAMPLING_RATE,
            language_probability=probability,
        )
        for raw in generated["segments"][0]:
            tokens = [int(t) for t in raw["tokens"]]
            result.generated_tokens += len(tokens)
            segment = Segment(float(raw["start"]), float(raw["end"]), self._text(model, tokens))
            if options.words:
                times = [float(t) for t in raw.get("token_timestamps", [])]
                segment.words = _words(model, tokens, times, segment.end)
            result.segments.append(segment)
        if not result.segments:
            sequence = [int(t) for t in generated["sequences"][0]]
            result.text = self._text(model, sequence)
            result.generated_tokens = sum(1 for t in sequence if t < model.eot)
        return result

    def _language(
        self, model: LoadedWhisper, features: torch.Tensor, options: TranscribeOptions
    ) -> tuple[str, float | None]:
        config = model.model.generation_config
        if not getattr(config, "is_multilingual", False):
            if options.language not in (None, "en"):
                raise InvalidInput("this model transcribes English only")
            return "en", None
        if options.language:
            if f"<|{options.language}|>" not in getattr(config, "lang_to_id", {}):
                raise InvalidInput(f"language {options.language!r} is not supported")
            return options.language, None
        return detect_language(model, features)

    @staticmethod
    def _text(model: LoadedWhisper, tokens: list[int]) -> str:
        text = [t for t in tokens if t < model.eot]
        return str(model.processor.tokenizer.decode(text, skip_special_tokens=True))


def _words(model: LoadedWhisper, tokens: list[int], times: list[float], end: float) -> list[Word]:
    """Words of a segment: text tokens grouped at leading spaces, each timed from its first
    token's timestamp to the timestamp of the token after its last."""
    tokenizer = model.processor.tokenizer
    groups: list[tuple[list[int], float, float]] = []
    for index, token in enumerate(tokens):
        if token >= model.eot or index >= len(times):
            continue
        piece = str(tokenizer.convert_ids_to_tokens(token))
        following = times[index + 1] if index + 1 < len(times) else end
        if not groups or piece.startswith("\u0120"):
            groups.append(([token], times[index], following))
        else:
            ids, start, _ = groups[-1]
            groups[-1] = ([*ids, token], start, following)
    words = []
    for ids, start, stop in groups:
        text = str(tokenizer.decode(ids)).strip()
        if text:
            words.append(Word(start, stop, text))
    return words


def create(config: BackendConfig, context: EngineContext) -> TransformersWhisperEngine:
    """The ``transformers-whisper`` backend type."""
    return TransformersWhisperEngine(config, context)
