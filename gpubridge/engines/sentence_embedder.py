"""Local text embeddings with sentence-transformers; loading and encoding run in worker threads."""

from __future__ import annotations

import asyncio
import time
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
from gpubridge.engines.local import pick_device, release_memory, resolve_source
from gpubridge.engines.residency import Resident
from gpubridge.errors import BackendError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


@dataclass
class _Encoded:
    vectors: list[list[float]]
    tokens: int
    seconds: float


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
    started = time.perf_counter()
    tokens = count_tokens(model, texts)
    vectors = model.encode(
        texts,
        batch_size=batch,
        normalize_embeddings=normalize,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return _Encoded(vectors.tolist(), tokens, time.perf_counter() - started)


class SentenceEmbedder:
    """An ``Engine`` embedding text with a local sentence-transformers model.

    Options: ``normalize`` (unit-length vectors, default false; a model's own options may
    override it), ``device``, ``batch_size``.
    """

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        self.name = config.name
        self._normalize = bool(config.options.get("normalize", False))
        self._device: str | None = config.options.get("device")
        self._batch_size = int(config.options.get("batch_size", 32))
        cache = context.model_cache() if context is not None else None
        self._models: Resident[SentenceTransformer] = Resident(cache, config.name)

    async def _loaded(self, model: ModelRef, emit: Emit | None = None) -> SentenceTransformer:
        try:
            return await self._models.get(
                model.source,
                lambda: load_sentence_model(model.source, self._device),
                emit=emit,
                label=model.id,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise BackendError(f"{self.name}: could not load {model.source}: {exc}") from exc

    async def load(self, model: ModelRef) -> None:
        await self._loaded(model)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        texts, batch = embedding_texts(request.input)
        model = await self._loaded(request.model, emit)
        normalize = bool(request.model.options.get("normalize", self._normalize))
        try:
            encoded = await asyncio.to_thread(_encode, model, texts, normalize, self._batch_size)
        except Exception as exc:
            raise BackendError(f"{self.name}: encoding failed: {exc!r}") from exc
        return EngineResult(
            output=embedding_output(encoded.vectors, batch),
            usage=Usage(prompt_tokens=encoded.tokens, compute_seconds=encoded.seconds),
        )

    async def health(self) -> bool:
        return True

    async def unload(self) -> None:
        if self._models.clear():
            await asyncio.to_thread(release_memory)


def create(config: BackendConfig, context: EngineContext) -> SentenceEmbedder:
    """The ``sentence-transformers`` backend type."""
    return SentenceEmbedder(config, context)
