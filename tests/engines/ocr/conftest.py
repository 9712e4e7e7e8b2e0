"""A tiny random-weight Florence-2 checkpoint, built once per test run."""

from __future__ import annotations

from tests.support.engine_calls import model_dir_fixture
from tests.support.tiny_florence import build_tiny_florence

tiny_florence_dir = model_dir_fixture(build_tiny_florence, "tiny-florence")
