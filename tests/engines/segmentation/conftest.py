"""A tiny random-weight SAM 2 checkpoint, built once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_sam2 import build_tiny_sam2


@pytest.fixture(scope="session")
def tiny_sam2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sam2(tmp_path_factory.mktemp("tiny-sam2"))
