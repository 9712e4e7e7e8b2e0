"""Fixtures for engine tests: tiny models built once per test run, a loopback upstream."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from tests.support.openai_upstream import Upstream, serve_openai_upstream
from tests.support.tiny_models import build_tiny_llm, build_tiny_sentence_model


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama-style model with a chat template."""
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="session")
def tiny_plain_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same kind of model, with no chat template."""
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-plain-llm"), chat_template=False)


@pytest.fixture(scope="session")
def tiny_sentence_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with mean pooling, as a sentence-transformers directory."""
    return build_tiny_sentence_model(tmp_path_factory.mktemp("tiny-sentence"))


@pytest.fixture(scope="module")
def _upstream_server() -> Iterator[Upstream]:
    with serve_openai_upstream() as server:
        yield server


@pytest.fixture
def upstream(_upstream_server: Upstream) -> Upstream:
    """An OpenAI-compatible upstream on loopback, reset to its defaults for each test; change
    ``upstream.behaviour`` freely."""
    _upstream_server.behaviour.reset()
    return _upstream_server
