"""Image-to-prompt with the CLIP-Interrogator method: a BLIP caption, extended with the artist,
medium, movement and flavour phrases that CLIP ranks closest to the image.

The phrase banks ship as text files in ``gpubridge/engines/data``; their CLIP text embeddings
are computed once when a CLIP model loads and stay resident with it. BLIP loading and
captioning come from ``captioner``; both models are held in the engine's ``Resident`` cache.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
    ModelRef,
    Usage,
)
from gpubridge.engines.captioner import LoadedBlip, caption_image, load_blip
from gpubridge.engines.local import pick_device, progress_event, resolve_source, threadsafe_emit
from gpubridge.engines.media import decode_image, require
from gpubridge.engines.phrase_ranking import Interrogation, Ranker, Send, interrogate
from gpubridge.engines.resident_engine import ResidentEngine, pick_dtype
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    import torch
    from PIL import Image

DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-large"
CAPTION_MAX_TOKENS = 32
MODES = ("fast", "classic", "best")
BANKS = ("artists", "mediums", "movements", "flavors")


def read_bank(name: str) -> list[str]:
    """The phrases of the packaged bank ``name`` (one per line, blank lines skipped)."""
    from importlib import resources

    text = resources.files("gpubridge.engines").joinpath("data", f"{name}.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class LoadedClip:
    """A CLIP model with its processor and the embedded phrase banks."""

    processor: Any
    model: Any
    device: str
    dtype: Any
    banks: dict[str, tuple[list[str], torch.Tensor]]
    """Bank name -> (phrases, unit-length text embeddings, one row per phrase)."""

    def embed_texts(self, texts: list[str], batch_size: int = 128) -> torch.Tensor:
        """Unit-length CLIP text embeddings of ``texts`` (truncated to CLIP's context)."""
        import torch

        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self.processor.tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    return_tensors="pt",
                ).to(self.device)
                rows.append(_unit(_features(self.model.get_text_features(**tokens))))
        return torch.cat(rows)

    def embed_image(self, image: Image.Image) -> torch.Tensor:
        """The unit-length CLIP embedding of ``image``."""
        import torch

        pixels = self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            features = self.model.get_image_features(
                pixel_values=pixels.to(self.device, self.dtype)
            )
        return _unit(_features(features))[0]


def _features(output: Any) -> torch.Tensor:
    """Projected features from ``get_*_features`` (a tensor, or an output's pooler_output)."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output  # type: ignore[no-any-return]


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    vectors = vectors.float()
    unit: torch.Tensor = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return unit


def bank_texts(name: str, phrases: list[str]) -> list[str]:
    """The texts CLIP embeds for a bank's phrases (artists are ranked as ``by <name>``)."""
    return [f"by {p}" for p in phrases] if name == "artists" else phrases


def load_clip(source: str, device: str | None = None, dtype: str | None = None) -> LoadedClip:
    """Load CLIP from ``source`` and embed every phrase bank once."""
    from transformers import CLIPModel, CLIPProcessor

    device = pick_device(device)
    path, local_only = resolve_source(source)
    chosen = pick_dtype(dtype, device)
    processor = CLIPProcessor.from_pretrained(path, local_files_only=local_only)
    model: Any = CLIPModel.from_pretrained(path, local_files_only=local_only, dtype=chosen)
    model.to(device)
    model.eval()
    loaded = LoadedClip(processor, model, device, chosen, banks={})
    for name in BANKS:
        phrases = read_bank(name)
        loaded.banks[name] = (phrases, loaded.embed_texts(bank_texts(name, phrases)))
    return loaded


class ClipInterrogator(ResidentEngine[LoadedClip]):
    """An ``Engine`` turning images into text-to-image prompts (BLIP caption + CLIP ranking).

    Options (backend, overridden per model): ``device``, ``dtype``, ``caption_model`` (the BLIP
    source).
    """

    def load_model(self, ref: ModelRef) -> LoadedClip:
        return load_clip(ref.source, self.option(ref, "device"), self.option(ref, "dtype"))

    async def _models_for(
        self, model: ModelRef, emit: Emit | None
    ) -> tuple[LoadedClip, LoadedBlip]:
        clip = await self.model(model, emit)
        caption_source = str(self.option(model, "caption_model", DEFAULT_CAPTION_MODEL))
        device, dtype = self.option(model, "device"), self.option(model, "dtype")
        blip = await self.resident(
            caption_source,
            lambda: load_blip(caption_source, device, dtype),
            emit=emit,
            label=caption_source,
        )
        return clip, blip

    async def load(self, model: ModelRef) -> None:
        await self._models_for(model, None)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        mode = request.input.get("mode", "fast")
        if mode not in MODES:
            raise InvalidInput(f"mode must be one of {list(MODES)}")
        image = await asyncio.to_thread(decode_image, require(request.media, "image_url"))
        clip, blip = await self._models_for(request.model, emit)
        send = threadsafe_emit(emit)
        await emit(progress_event("interrogating", 0, 2, part="caption"))
        caption, _ = await self.timed(
            lambda: caption_image(blip, image, None, CAPTION_MAX_TOKENS), "interrogation"
        )
        await emit(progress_event("interrogating", 1, 2, part="ranking"))
        result, ranking_seconds = await self.timed(
            lambda: _interrogate(clip, image, caption.text, mode, send), "interrogation"
        )
        await emit(progress_event("interrogating", 2, 2, part="done"))
        return EngineResult(
            output={**result.as_output(), "mode": mode, "model": request.model.id},
            usage=Usage(
                prompt_tokens=caption.prompt_tokens,
                completion_tokens=caption.completion_tokens,
                compute_seconds=caption.seconds + ranking_seconds,
            ),
        )


def _interrogate(
    clip: LoadedClip, image: Image.Image, caption: str, mode: str, send: Send
) -> Interrogation:
    ranker = Ranker(banks=clip.banks, embed_texts=clip.embed_texts)
    return interrogate(ranker, clip.embed_image(image), caption, mode, send)


def create(config: BackendConfig, context: EngineContext) -> ClipInterrogator:
    """The ``clip-interrogator`` backend type."""
    return ClipInterrogator(config, context)
