"""Tiny random BLIP, CLIP and LLaVA models, built once per test run."""

from __future__ import annotations

from tests.support.engine_calls import model_dir_fixture
from tests.support.tiny_vision import (
    build_tiny_blip,
    build_tiny_clip,
    build_tiny_llava,
    build_tiny_query_model,
)

tiny_blip_dir = model_dir_fixture(build_tiny_blip, "tiny-blip")
tiny_clip_dir = model_dir_fixture(build_tiny_clip, "tiny-clip")
tiny_llava_dir = model_dir_fixture(build_tiny_llava, "tiny-llava")
tiny_query_dir = model_dir_fixture(build_tiny_query_model, "tiny-query")
