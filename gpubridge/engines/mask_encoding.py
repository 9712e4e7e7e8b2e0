"""Binary masks as public outputs: PNG files, COCO-style run-length encoding, polygons, boxes.

NumPy, Pillow and OpenCV are imported inside the functions, which run in worker threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import OutputFile
from gpubridge.engines.media import image_file

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


def rle_encode(mask: NDArray[np.bool_]) -> dict[str, Any]:
    """COCO uncompressed RLE: ``{"size": [h, w], "counts": [...]}``, runs over the mask in
    column-major order, starting with a (possibly empty) run of zeros."""
    import numpy as np

    height, width = mask.shape
    flat = np.asarray(mask, dtype=np.uint8).reshape(-1, order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"size": [height, width], "counts": counts}


def rle_decode(rle: dict[str, Any]) -> NDArray[np.bool_]:
    """The mask an ``rle_encode`` result describes."""
    import numpy as np

    height, width = rle["size"]
    values = np.zeros(len(rle["counts"]), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, rle["counts"])
    return flat.reshape((height, width), order="F")


def rle_area(rle: dict[str, Any]) -> int:
    """Pixels set in an RLE mask."""
    return int(sum(rle["counts"][1::2]))


def mask_box(mask: NDArray[np.bool_]) -> list[int]:
    """``[x1, y1, x2, y2]`` around the set pixels (edges, so x2 - x1 is the width); zeros when
    the mask is empty."""
    import numpy as np

    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def mask_polygons(mask: NDArray[np.bool_], tolerance: float = 0.0) -> list[list[float]]:
    """Outer contours as flat ``[x1, y1, x2, y2, ...]`` lists of at least three points
    (OpenCV; ``tolerance`` > 0 simplifies them by that many pixels). A mask too thin for a
    contour gets the rectangle around it."""
    import cv2
    import numpy as np

    image = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(image, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons: list[list[float]] = []
    for contour in contours:
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, tolerance, True)
        points = contour.reshape(-1, 2)
        if len(points) >= 3:
            polygons.append([float(v) for v in points.reshape(-1)])
    if not polygons and image.any():
        x1, y1, x2, y2 = mask_box(mask)
        polygons.append([float(v) for v in (x1, y1, x2 - 1, y1, x2 - 1, y2 - 1, x1, y2 - 1)])
    return polygons


def mask_png(mask: NDArray[np.bool_], **metadata: Any) -> OutputFile:
    """The mask as a black-and-white 8-bit PNG of its own size."""
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8))
    return image_file(image, "png", **metadata)


def describe_mask(
    mask: NDArray[np.bool_], *, polygon_tolerance: float = 0.0, **fields: Any
) -> dict[str, Any]:
    """One mask's public view: its PNG, box, area, RLE and polygons, plus ``fields``."""
    rle = rle_encode(mask)
    return {
        **fields,
        "box": mask_box(mask),
        "area": rle_area(rle),
        "mask": mask_png(mask),
        "rle": rle,
        "polygons": mask_polygons(mask, polygon_tolerance),
    }
