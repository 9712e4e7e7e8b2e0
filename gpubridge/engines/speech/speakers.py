"""Who speaks when: x-vector speaker embeddings of short windows of speech, clustered.

The embeddings come from a transformers audio x-vector model (``WavLMForXVector``,
``UniSpeechSatForXVector``...); windows are grouped by agglomerative clustering on cosine
distance, into a given number of speakers or by a distance threshold.
torch, transformers and scikit-learn are imported inside the functions (worker threads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.engines.local import from_pretrained, pick_device, resolve_source
from gpubridge.engines.speech.vad import SAMPLING_RATE, Region

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


@dataclass(frozen=True)
class SpeakerCounts:
    """How many speakers to find: exactly ``exact``, else between ``minimum`` and ``maximum``."""

    exact: int | None = None
    minimum: int = 1
    maximum: int | None = None


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: int


@dataclass
class SpeakerModel:
    model: Any
    extractor: Any
    device: str


def load_speaker_model(source: str, device: str | None) -> SpeakerModel:
    """An audio x-vector model and its feature extractor (directory, package or cached hub id)."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

    location, local_only = resolve_source(source)
    target = pick_device(device)
    extractor = from_pretrained(AutoFeatureExtractor, location, local_files_only=local_only)
    model = AutoModelForAudioXVector.from_pretrained(location, local_files_only=local_only)
    return SpeakerModel(model.to(target).eval(), extractor, target)


def windows(regions: list[Region], length_s: float, hop_s: float) -> list[Region]:
    """Windows of ``length_s`` every ``hop_s`` inside each region (a shorter region is one
    window of its own)."""
    result: list[Region] = []
    for start, end in regions:
        if end - start <= length_s:
            result.append((start, end))
            continue
        position = start
        while position + length_s < end:
            result.append((round(position, 3), round(position + length_s, 3)))
            position += hop_s
        result.append((round(end - length_s, 3), end))
    return result


def embed(
    speaker_model: SpeakerModel,
    audio: NDArray[np.float32],
    spans: list[Region],
    batch_size: int = 16,
) -> NDArray[np.float32]:
    """Unit-length speaker embeddings of ``spans`` of ``audio``, one row per span."""
    import numpy as np
    import torch

    rows: list[NDArray[np.float32]] = []
    for first in range(0, len(spans), batch_size):
        crops = [
            audio[int(a * SAMPLING_RATE) : max(int(b * SAMPLING_RATE), int(a * SAMPLING_RATE) + 1)]
            for a, b in spans[first : first + batch_size]
        ]
        inputs = speaker_model.extractor(
            crops,
            sampling_rate=SAMPLING_RATE,
            padding=True,
            return_attention_mask=True,
            return_tensors="pt",
        ).to(speaker_model.device)
        with torch.inference_mode():
            vectors = speaker_model.model(**inputs).embeddings.float()
        rows.append(torch.nn.functional.normalize(vectors, dim=-1).cpu().numpy())
    dimensions = int(speaker_model.model.config.xvector_output_dim)
    return np.concatenate(rows) if rows else np.zeros((0, dimensions), dtype=np.float32)


def cluster(embeddings: NDArray[np.float32], counts: SpeakerCounts, threshold: float) -> list[int]:
    """A cluster label per embedding: ``counts.exact`` clusters when given, else as many as
    the cosine ``threshold`` separates, kept within ``counts.minimum``..``counts.maximum``."""
    from sklearn.cluster import AgglomerativeClustering

    total = len(embeddings)
    if total <= 1:
        return [0] * total

    def fit(clusters: int | None) -> list[int]:
        model = AgglomerativeClustering(
            n_clusters=clusters,
            distance_threshold=None if clusters else threshold,
            metric="cosine",
            linkage="average",
        )
        return [int(label) for label in model.fit_predict(embeddings)]

    if counts.exact:
        return fit(min(counts.exact, total))
    labels = fit(None)
    found = len(set(labels))
    wanted = max(counts.minimum, min(found, counts.maximum or found))
    wanted = min(wanted, total)
    return labels if wanted == found else fit(wanted)


def turns(spans: list[Region], labels: list[int]) -> list[Turn]:
    """Speaker turns from labelled windows: speakers renumbered by first appearance and
    overlapping windows of one speaker merged."""
    order: dict[int, int] = {}
    result: list[Turn] = []
    for (start, end), label in sorted(zip(spans, labels, strict=True)):
        speaker = order.setdefault(label, len(order))
        if result and result[-1].speaker == speaker and start <= result[-1].end:
            result[-1] = Turn(result[-1].start, max(end, result[-1].end), speaker)
        else:
            result.append(Turn(start, end, speaker))
    return result
