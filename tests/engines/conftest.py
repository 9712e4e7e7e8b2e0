"""Fixtures for engine tests: tiny models built once per test run, a loopback upstream."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from tests.support.openai_upstream import Upstream, serve_openai_upstream


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
