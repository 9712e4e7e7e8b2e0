"""Tiny imaging models built once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_imaging import (
    build_tiny_face_detector,
    build_tiny_face_restorer,
    build_tiny_segmenter,
    build_tiny_swin2sr,
)


@pytest.fixture(scope="session")
def tiny_birefnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BiRefNet-shaped ONNX export (logits out, fixed 32x32 input)."""
    return build_tiny_segmenter(tmp_path_factory.mktemp("birefnet"))


@pytest.fixture(scope="session")
def tiny_rmbg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RMBG-2.0-shaped ONNX export (probabilities out, dynamic input size)."""
    return build_tiny_segmenter(
        tmp_path_factory.mktemp("rmbg"),
        input_name="pixel_values",
        output_name="alphas",
        probabilities=True,
        dynamic=True,
    )


@pytest.fixture(scope="session")
def tiny_swin2sr_x2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_swin2sr(tmp_path_factory.mktemp("swin2sr-x2"), upscale=2)


@pytest.fixture(scope="session")
def tiny_swin2sr_x4_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_swin2sr(tmp_path_factory.mktemp("swin2sr-x4"), upscale=4, seed=1)


@pytest.fixture(scope="session")
def tiny_faces_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like the hub repository of the face models: a CodeFormer-shaped
    and a GFPGAN-shaped restorer and a YuNet-format detector."""
    directory = tmp_path_factory.mktemp("faces")
    build_tiny_face_restorer(directory / "codeformer.onnx")
    build_tiny_face_restorer(directory / "gfpgan_1.4.onnx", fidelity_input=False, seed=1)
    build_tiny_face_detector(directory / "yunet_2023_mar.onnx")
    return directory
