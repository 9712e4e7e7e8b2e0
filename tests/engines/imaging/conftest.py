"""Tiny imaging models built once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.engine_calls import model_dir_fixture
from tests.support.tiny_imaging import (
    build_tiny_face_detector,
    build_tiny_face_restorer,
    build_tiny_segmenter,
    build_tiny_swin2sr,
)

tiny_birefnet_dir = model_dir_fixture(build_tiny_segmenter, "birefnet")
"""A BiRefNet-shaped ONNX export (logits out, fixed 32x32 input)."""

tiny_rmbg_dir = model_dir_fixture(
    build_tiny_segmenter,
    "rmbg",
    input_name="pixel_values",
    output_name="alphas",
    probabilities=True,
    dynamic=True,
)
"""An RMBG-2.0-shaped ONNX export (probabilities out, dynamic input size)."""

tiny_swin2sr_x2_dir = model_dir_fixture(build_tiny_swin2sr, "swin2sr-x2", upscale=2)
tiny_swin2sr_x4_dir = model_dir_fixture(build_tiny_swin2sr, "swin2sr-x4", upscale=4, seed=1)


@pytest.fixture(scope="session")
def tiny_faces_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like the hub repository of the face models: a CodeFormer-shaped
    and a GFPGAN-shaped restorer and a YuNet-format detector."""
    directory = tmp_path_factory.mktemp("faces")
    build_tiny_face_restorer(directory / "codeformer.onnx")
    build_tiny_face_restorer(directory / "gfpgan_1.4.onnx", fidelity_input=False, seed=1)
    build_tiny_face_detector(directory / "yunet_2023_mar.onnx")
    return directory
