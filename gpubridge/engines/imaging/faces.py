"""Finding faces and moving them into and out of the aligned square crop that face restoration
networks (CodeFormer, GFPGAN) read.

Faces are found by a YuNet detector through OpenCV's ``FaceDetectorYN``; each face's five
landmarks (eyes, nose tip, mouth corners) are mapped onto the FFHQ template by a similarity
transform, and the restored crop is warped back and feathered into the image.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

FFHQ_TEMPLATE = (
    (0.37691676, 0.46864664),
    (0.62285697, 0.46912813),
    (0.50123859, 0.61331904),
    (0.39308822, 0.72541100),
    (0.61150205, 0.72490465),
)
"""The five landmarks of an aligned FFHQ face, as fractions of its square crop."""


@dataclass(frozen=True)
class Face:
    """A detected face: ``box`` (x, y, width, height), ``landmarks`` (5 x 2), ``score``."""

    box: tuple[float, float, float, float]
    landmarks: NDArray[np.float32]
    score: float


@dataclass
class FaceDetector:
    """A loaded YuNet detector (OpenCV's detector is not thread-safe: ``lock`` guards it)."""

    detector: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_detector(
    path: str, score_threshold: float = 0.7, nms_threshold: float = 0.3, top_k: int = 5000
) -> FaceDetector:
    """Open the YuNet ONNX file at ``path``."""
    import cv2

    detector = cv2.FaceDetectorYN.create(
        path, "", (320, 320), score_threshold, nms_threshold, top_k
    )
    return FaceDetector(detector)


def detect(detector: FaceDetector, bgr: NDArray[np.uint8], max_faces: int = 20) -> list[Face]:
    """The faces in a BGR image, most confident first (at most ``max_faces``)."""
    import numpy as np

    height, width = bgr.shape[:2]
    with detector.lock:
        detector.detector.setInputSize((width, height))
        _, rows = detector.detector.detect(bgr)
    if rows is None:
        return []
    faces = [
        Face(
            (float(r[0]), float(r[1]), float(r[2]), float(r[3])),
            np.asarray(r[4:14], np.float32).reshape(5, 2),
            float(r[14]),
        )
        for r in rows
    ]
    return sorted(faces, key=lambda f: f.score, reverse=True)[:max_faces]


def align(
    bgr: NDArray[np.uint8], landmarks: NDArray[np.float32], size: int
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """The ``size`` x ``size`` aligned crop of the face with ``landmarks``, and the affine
    transform from image to crop."""
    import cv2
    import numpy as np

    template = np.asarray(FFHQ_TEMPLATE, np.float32) * size
    affine, _ = cv2.estimateAffinePartial2D(landmarks, template, method=cv2.LMEDS)
    if affine is None:
        raise ValueError("could not align a face")
    crop = cv2.warpAffine(
        bgr, affine, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(crop, np.uint8), np.asarray(affine, np.float64)


def paste(
    bgr: NDArray[np.uint8], face: NDArray[np.uint8], affine: NDArray[np.float64]
) -> NDArray[np.uint8]:
    """``bgr`` with the aligned crop ``face`` warped back in place, its edges feathered (only
    the region the crop covers is touched)."""
    import math

    import cv2
    import numpy as np

    height, width = bgr.shape[:2]
    size = face.shape[0]
    inverse = cv2.invertAffineTransform(affine)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    points = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = (max(0, math.floor(v)) for v in points.min(axis=0))
    x1, y1 = math.ceil(points[:, 0].max()), math.ceil(points[:, 1].max())
    x1, y1 = min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        return bgr
    shifted = inverse.copy()
    shifted[:, 2] -= (x0, y0)
    margin = max(size // 16, 1)
    mask = np.zeros((size, size), np.float32)
    mask[margin:-margin, margin:-margin] = 1.0
    mask = np.asarray(cv2.GaussianBlur(mask, (2 * margin + 1, 2 * margin + 1), 0), np.float32)
    region = (x1 - x0, y1 - y0)
    back = cv2.warpAffine(face, shifted, region, borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(mask, shifted, region).clip(0.0, 1.0)[..., None]
    under = bgr[y0:y1, x0:x1].astype(np.float32)
    result = bgr.copy()
    result[y0:y1, x0:x1] = (weight * back + (1.0 - weight) * under).round().astype(np.uint8)
    return result
