"""Tiny random BLIP, CLIP and LLaVA models, built once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_vision import (
    build_tiny_blip,
    build_tiny_clip,
    build_tiny_llava,
    build_tiny_query_model,
)


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="session")
def tiny_query_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_query_model(tmp_path_factory.mktemp("tiny-query"))
