from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpubridge.engines.sam2_inputs import Sam2Preprocessing


def test_config_values_are_read_and_missing_ones_keep_sam2_defaults() -> None:
    prep = Sam2Preprocessing.from_config({"size": {"height": 64, "width": 64}})
    assert (prep.height, prep.width) == (64, 64)
    assert prep.mean == pytest.approx((0.485, 0.456, 0.406))
    assert prep.rescale_factor == pytest.approx(1 / 255)
    assert Sam2Preprocessing.from_config({}, default_size=32).height == 32


def test_pixel_values_are_resized_rescaled_and_normalized_channels_first() -> None:
    prep = Sam2Preprocessing(height=8, width=16)
    image = Image.new("RGB", (40, 30), (255, 0, 128))
    pixels = prep.pixel_values(image)
    assert pixels.shape == (1, 3, 8, 16)
    assert pixels.dtype == np.float32
    expected = (np.array([1.0, 0.0, 128 / 255]) - np.array(prep.mean)) / np.array(prep.std)
    assert pixels[0, :, 4, 8] == pytest.approx(expected, abs=1e-5)


def test_prompt_coordinates_are_scaled_per_axis_to_the_model_input() -> None:
    prep = Sam2Preprocessing(height=64, width=64)
    points = prep.scale_points([[10, 15], [40, 0]], (40, 30))
    assert points.ravel().tolist() == pytest.approx([16.0, 32.0, 64.0, 0.0])
    boxes = prep.scale_boxes([[0, 0, 20, 30]], (40, 30))
    assert boxes.shape == (1, 4)
    assert boxes[0].tolist() == pytest.approx([0.0, 0.0, 32.0, 64.0])


def test_a_checkpoint_directory_without_a_preprocessor_config_uses_the_default_size(
    tmp_path: Path,
) -> None:
    assert Sam2Preprocessing.from_pretrained(str(tmp_path), True, default_size=64).height == 64
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 32, "width": 32}, "image_mean": [0.5, 0.5, 0.5]})
    )
    prep = Sam2Preprocessing.from_pretrained(str(tmp_path), True)
    assert (prep.height, prep.mean) == (32, (0.5, 0.5, 0.5))
