"""Local text embeddings with sentence-transformers; loading and encoding run in worker threads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
    ModelRef,
    Usage,
)
from gpubridge.engines.inputs import embedding_output, embedding_texts, estimate_tokens
from gpubridge.engines.local import pick_device, resolve_source
from gpubridge.engines.resident_engine import ResidentEngine

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


@dataclass
class _Encoded:
    vectors: list[list[float]]
    tokens: int


def load_sentence_model(source: str, device: str | None) -> SentenceTransformer:
    """Load a sentence-transformers model from a local directory or an already cached hub id."""
    from sentence_transformers import SentenceTransformer

    location, local_only = resolve_source(source)
    return SentenceTransformer(location, device=pick_device(device), local_files_only=local_only)


def count_tokens(model: SentenceTransformer, texts: list[str]) -> int:
    """Tokens the model reads for ``texts`` (special tokens included, truncated as it does)."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return sum(estimate_tokens(t) for t in texts)
    limit = model.max_seq_length
    ids = tokenizer(texts, add_special_tokens=True, truncation=bool(limit), max_length=limit)
    return sum(len(row) for row in ids["input_ids"])


def _encode(model: SentenceTransformer, texts: list[str], normalize: bool, batch: int) -> _Encoded:
    tokens = count_tokens(model, texts)
    vectors = model.encode(
        texts,
        batch_size=batch,
        normalize_embeddings=normalize,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return _Encoded(vectors.tolist(), tokens)


class SentenceEmbedder(ResidentEngine["SentenceTransformer"]):
    """An ``Engine`` embedding text with a local sentence-transformers model.

    Options: ``normalize`` (unit-length vectors, default false; a model's own options may
    override it), ``device``, ``batch_size``.
    """

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        self._normalize = bool(self.options.get("normalize", False))
        self._batch_size = int(self.options.get("batch_size", 32))

    def load_model(self, ref: ModelRef) -> SentenceTransformer:
        return load_sentence_model(ref.source, self.device)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        texts, batch = embedding_texts(request.input)
        model = await self.model(request.model, emit)
        normalize = bool(request.model.options.get("normalize", self._normalize))
        encoded, seconds = await self.timed(
            lambda: _encode(model, texts, normalize, self._batch_size), "encoding"
        )
        return EngineResult(
            output=embedding_output(encoded.vectors, batch),
            usage=Usage(prompt_tokens=encoded.tokens, compute_seconds=seconds),
        )


def create(config: BackendConfig, context: EngineContext) -> SentenceEmbedder:
    """The ``sentence-transformers`` backend type."""
    return SentenceEmbedder(config, context)
