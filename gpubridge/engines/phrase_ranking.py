"""Ranking phrase banks against a CLIP image embedding and composing a text-to-image prompt.

``fast`` takes the closest phrases of each bank; ``classic`` uses the classic layout
(``caption, medium by artist, movement``) with three flavours; ``best`` grows the prompt
greedily, adding the flavour that most raises the whole prompt's similarity to the image
until none does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import EngineEvent
from gpubridge.engines.local import progress_event

if TYPE_CHECKING:
    import torch

FAST_FLAVORS = 6
CLASSIC_FLAVORS = 3
BEST_CANDIDATES = 32
BEST_MAX_FLAVORS = 12

Send = Callable[[EngineEvent], None]


@dataclass
class Ranker:
    """Embedded phrase banks (unit rows) and the text encoder that made them."""

    banks: dict[str, tuple[list[str], torch.Tensor]]
    embed_texts: Callable[[list[str]], torch.Tensor]


@dataclass(frozen=True)
class Ranked:
    """A phrase and its cosine similarity to the image."""

    text: str
    score: float

    def as_output(self) -> dict[str, Any]:
        return {"text": self.text, "score": self.score}


@dataclass
class Interrogation:
    """The composed prompt and the phrases chosen for it."""

    prompt: str
    caption: str
    artist: Ranked
    medium: Ranked
    movement: Ranked
    flavors: list[Ranked]

    def as_output(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "caption": self.caption,
            "artist": self.artist.as_output(),
            "medium": self.medium.as_output(),
            "movement": self.movement.as_output(),
            "flavors": [f.as_output() for f in self.flavors],
        }


def top(ranker: Ranker, bank: str, image: torch.Tensor, k: int) -> list[Ranked]:
    """The ``k`` phrases of ``bank`` closest to the unit image embedding, best first."""
    phrases, embeddings = ranker.banks[bank]
    scores = embeddings @ image.to(embeddings.device, embeddings.dtype)
    values, indices = scores.topk(min(k, len(phrases)))
    return [
        Ranked(phrases[int(i)], round(float(v), 4))
        for v, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def _similarities(ranker: Ranker, image: torch.Tensor, texts: list[str]) -> list[float]:
    embeddings = ranker.embed_texts(texts)
    return [float(s) for s in (embeddings @ image.to(embeddings.device, embeddings.dtype))]


def chain_flavors(
    ranker: Ranker,
    image: torch.Tensor,
    base: str,
    candidates: list[Ranked],
    send: Send | None = None,
) -> list[Ranked]:
    """Greedily append the candidate that most raises the prompt's similarity to the image."""
    current, score = base, _similarities(ranker, image, [base])[0]
    remaining, chosen = list(candidates), []
    for step in range(1, BEST_MAX_FLAVORS + 1):
        if not remaining:
            break
        texts = [f"{current}, {c.text}" for c in remaining]
        scores = _similarities(ranker, image, texts)
        best = max(range(len(texts)), key=scores.__getitem__)
        if scores[best] <= score:
            break
        current, score = texts[best], scores[best]
        chosen.append(remaining.pop(best))
        if send is not None:
            send(progress_event("ranking_flavors", step, BEST_MAX_FLAVORS))
    return chosen


def interrogate(
    ranker: Ranker, image: torch.Tensor, caption: str, mode: str, send: Send | None = None
) -> Interrogation:
    """Rank every bank against ``image`` and compose the prompt for ``mode``."""
    artist = top(ranker, "artists", image, 1)[0]
    medium = top(ranker, "mediums", image, 1)[0]
    movement = top(ranker, "movements", image, 1)[0]
    if mode == "classic":
        base = f"{caption}, {medium.text} by {artist.text}, {movement.text}"
        flavors = top(ranker, "flavors", image, CLASSIC_FLAVORS)
    else:
        base = f"{caption}, by {artist.text}, {medium.text}, {movement.text}"
        if mode == "best":
            candidates = top(ranker, "flavors", image, BEST_CANDIDATES)
            flavors = chain_flavors(ranker, image, base, candidates, send)
        else:
            flavors = top(ranker, "flavors", image, FAST_FLAVORS)
    prompt = ", ".join([base, *(f.text for f in flavors)])
    return Interrogation(prompt, caption, artist, medium, movement, flavors)
