"""A tiny random-weight Florence-2 checkpoint, built once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_florence import build_tiny_florence


@pytest.fixture(scope="session")
def tiny_florence_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_florence(tmp_path_factory.mktemp("tiny-florence"))
