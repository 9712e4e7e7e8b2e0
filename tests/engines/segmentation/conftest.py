"""A tiny random-weight SAM 2 checkpoint, built once per test run."""

from __future__ import annotations

from tests.support.engine_calls import model_dir_fixture
from tests.support.tiny_sam2 import build_tiny_sam2

tiny_sam2_dir = model_dir_fixture(build_tiny_sam2, "tiny-sam2")
