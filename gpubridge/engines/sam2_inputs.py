"""SAM 2 input preparation in NumPy and Pillow.

The transformers SAM 2 image processor is built on torchvision; this module reproduces what it
does for still images from the checkpoint's ``preprocessor_config.json``: resize to the model's
square input (no aspect-preserving padding), rescale to [0, 1], normalize with the ImageNet mean
and standard deviation, and map prompt coordinates from image pixels to that input.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BILINEAR = 2


@dataclass(frozen=True)
class Sam2Preprocessing:
    """How images and prompts become SAM 2 model inputs."""

    height: int = 1024
    width: int = 1024
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    rescale_factor: float = 1 / 255
    resample: int = BILINEAR

    @classmethod
    def from_config(cls, config: dict[str, Any], default_size: int = 1024) -> Sam2Preprocessing:
        """From a ``preprocessor_config.json`` mapping (absent keys keep SAM 2's defaults)."""
        size = config.get("size") or {}
        if isinstance(size, int):
            size = {"height": size, "width": size}
        if "longest_edge" in size:
            size = {"height": size["longest_edge"], "width": size["longest_edge"]}
        mean = config.get("image_mean", IMAGENET_MEAN) if config.get("do_normalize", True) else None
        std = config.get("image_std", IMAGENET_STD) if config.get("do_normalize", True) else None
        rescale = config.get("rescale_factor", 1 / 255) if config.get("do_rescale", True) else 1.0
        return cls(
            height=int(size.get("height", default_size)),
            width=int(size.get("width", default_size)),
            mean=tuple(float(v) for v in (mean or (0.0, 0.0, 0.0))),
            std=tuple(float(v) for v in (std or (1.0, 1.0, 1.0))),
            rescale_factor=float(rescale),
            resample=int(config.get("resample", BILINEAR)),
        )

    @classmethod
    def from_pretrained(
        cls, location: str, local_files_only: bool, default_size: int = 1024
    ) -> Sam2Preprocessing:
        """From the checkpoint's ``preprocessor_config.json`` (a directory or a cached hub id)."""
        from transformers.utils.hub import cached_file

        path = cached_file(
            location,
            "preprocessor_config.json",
            local_files_only=local_files_only,
            _raise_exceptions_for_missing_entries=False,
        )
        if path is None:
            return cls(height=default_size, width=default_size)
        with open(path, encoding="utf-8") as handle:
            return cls.from_config(json.load(handle), default_size)

    def pixel_values(self, image: Image.Image) -> NDArray[np.float32]:
        """The image as a ``(1, 3, height, width)`` normalized float32 array."""
        import numpy as np
        from PIL import Image as PILImage

        resized = image.convert("RGB").resize(
            (self.width, self.height), resample=PILImage.Resampling(self.resample)
        )
        array = np.asarray(resized, dtype=np.float32) * np.float32(self.rescale_factor)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        normalized = (array - mean) / std
        return np.ascontiguousarray(normalized.transpose(2, 0, 1)[None], dtype=np.float32)

    def scale_points(
        self, points: Sequence[Sequence[float]] | NDArray[np.float32], original: tuple[int, int]
    ) -> NDArray[np.float32]:
        """``[x, y]`` pixel points of an image of ``original`` (width, height) in model-input
        coordinates, shape ``(N, 2)``."""
        import numpy as np

        coords = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        width, height = original
        coords[:, 0] *= self.width / width
        coords[:, 1] *= self.height / height
        return coords

    def scale_boxes(
        self, boxes: Sequence[Sequence[float]], original: tuple[int, int]
    ) -> NDArray[np.float32]:
        """``[x1, y1, x2, y2]`` pixel boxes in model-input coordinates, shape ``(N, 4)``."""
        corners = self.scale_points([c for box in boxes for c in _corners(box)], original)
        return corners.reshape(-1, 4)


def _corners(box: Sequence[float]) -> list[list[float]]:
    return [[float(box[0]), float(box[1])], [float(box[2]), float(box[3])]]
