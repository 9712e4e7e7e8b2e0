"""Control maps for ControlNet derived from a reference image: Canny edges (OpenCV) and depth
(a transformers depth-estimation model such as Depth Anything V2 or DPT).

OpenCV, NumPy, torch and transformers are imported inside the functions, which run in worker
threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.engines.local import pick_device, resolve_source

if TYPE_CHECKING:
    from PIL import Image


def canny_map(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    """Canny edges of ``image`` as a 3-channel white-on-black image (OpenCV)."""
    import cv2
    import numpy as np
    from PIL import Image

    gray = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


@dataclass
class DepthEstimator:
    """A loaded depth-estimation model, its image processor and its device."""

    model: Any
    processor: Any
    device: str


def load_depth_estimator(source: str, device: str | None = None) -> DepthEstimator:
    """A transformers depth-estimation model (``AutoModelForDepthEstimation``) from ``source``."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    location, local_only = resolve_source(source)
    target = pick_device(device)
    model = AutoModelForDepthEstimation.from_pretrained(location, local_files_only=local_only)
    processors: Any = AutoImageProcessor
    processor = processors.from_pretrained(location, local_files_only=local_only)
    return DepthEstimator(model.to(target).eval(), processor, target)


def depth_map(estimator: DepthEstimator, image: Image.Image) -> Image.Image:
    """The estimated depth of ``image`` at its size, near = bright, as a 3-channel image."""
    import numpy as np
    import torch
    from PIL import Image

    inputs = estimator.processor(images=image.convert("RGB"), return_tensors="pt")
    with torch.inference_mode():
        depth = estimator.model(**inputs.to(estimator.device)).predicted_depth
    depth = torch.nn.functional.interpolate(
        depth.unsqueeze(1).float(), size=(image.height, image.width), mode="bicubic"
    )[0, 0]
    low, high = depth.min(), depth.max()
    scaled = (depth - low) / (high - low) if high > low else torch.zeros_like(depth)
    gray = (scaled * 255.0).clamp(0, 255).to(torch.uint8).cpu().numpy()
    return Image.fromarray(np.stack([gray] * 3, axis=-1))
