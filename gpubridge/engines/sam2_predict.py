"""SAM 2 inference for still images: masks for point and box prompts, and automatic masks
for every object (a grid of single-point prompts, filtered by predicted IoU and stability,
deduplicated by box non-maximum suppression).

torch is imported inside the functions, which run in worker threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpubridge.engines.sam2_inputs import Sam2Preprocessing

if TYPE_CHECKING:
    import numpy as np
    import torch
    from numpy.typing import NDArray
    from PIL import Image


@dataclass(frozen=True)
class Prediction:
    """One mask at the input image's size, its predicted IoU, and the prompt it answers."""

    mask: NDArray[np.bool_]
    score: float
    prompt: int | None = None
    stability: float | None = None


@dataclass(frozen=True)
class AutoSettings:
    """Automatic mask generation settings (SAM 2's automatic mask generator defaults)."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    max_masks: int = 200
    min_area: int = 0


@dataclass(frozen=True)
class Prompts:
    """Pixel-space prompts: ``points`` with ``labels`` (one object), and/or ``boxes``."""

    points: Sequence[Sequence[float]] = ()
    labels: Sequence[int] = ()
    boxes: Sequence[Sequence[float]] = ()


Progress = Callable[[int, int], None]


def _embeddings(model: Any, prep: Sam2Preprocessing, image: Image.Image) -> list[torch.Tensor]:
    import torch

    pixels = torch.from_numpy(prep.pixel_values(image))
    parameter = next(model.parameters())
    embeddings: list[torch.Tensor] = model.get_image_embeddings(
        pixels.to(parameter.device, parameter.dtype)
    )
    return embeddings


def _upscale(logits: torch.Tensor, size: tuple[int, int]) -> NDArray[np.bool_]:
    """Low-resolution mask logits ``(N, h, w)`` as boolean masks ``(N, H, W)``."""
    import torch.nn.functional as F

    resized = F.interpolate(logits[None].float(), size, mode="bilinear", align_corners=False)
    masks: NDArray[np.bool_] = (resized[0] > 0).cpu().numpy()
    return masks


def predict_prompted(
    model: Any,
    prep: Sam2Preprocessing,
    image: Image.Image,
    prompts: Prompts,
    multimask_output: bool,
) -> list[Prediction]:
    """Masks for the prompts: one object for the points (with at most one box), or one object
    per box; three candidates each with ``multimask_output``, best first."""
    import torch

    size = (image.height, image.width)
    embeddings = _embeddings(model, prep, image)
    device, dtype = embeddings[-1].device, embeddings[-1].dtype
    kwargs: dict[str, Any] = {}
    if prompts.points:
        points = prep.scale_points(prompts.points, image.size)
        labels = list(prompts.labels) or [1] * len(points)
        kwargs["input_points"] = torch.from_numpy(points)[None, None].to(device, dtype)
        kwargs["input_labels"] = torch.tensor([[labels]], dtype=torch.int32, device=device)
    if prompts.boxes:
        boxes = prep.scale_boxes(prompts.boxes, image.size)
        kwargs["input_boxes"] = torch.from_numpy(boxes)[None].to(device, dtype)
    outputs = model(image_embeddings=embeddings, multimask_output=multimask_output, **kwargs)
    logits = outputs.pred_masks[0]
    scores = outputs.iou_scores[0].float().cpu()
    predictions: list[Prediction] = []
    for prompt in range(logits.shape[0]):
        masks = _upscale(logits[prompt], size)
        order = torch.argsort(scores[prompt], descending=True).tolist()
        for index in order:
            predictions.append(Prediction(masks[index], float(scores[prompt, index]), prompt))
    return predictions


def point_grid(points_per_side: int, width: int, height: int) -> NDArray[np.float32]:
    """``points_per_side``² pixel points at the centres of an even grid over the image."""
    import numpy as np

    offsets = (np.arange(points_per_side, dtype=np.float32) + 0.5) / points_per_side
    xs, ys = np.meshgrid(offsets * width, offsets * height)
    return np.stack([xs.reshape(-1), ys.reshape(-1)], axis=1)


def stability_scores(logits: torch.Tensor, offset: float) -> torch.Tensor:
    """IoU between the masks thresholded at +offset and at -offset."""
    intersections = (logits > offset).flatten(1).sum(-1).float()
    unions = (logits > -offset).flatten(1).sum(-1).float()
    return intersections / unions.clamp(min=1.0)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``[x1, y1, x2, y2]`` pixel-edge boxes of boolean masks ``(N, H, W)`` (zeros when empty)."""
    import torch

    count, height, width = masks.shape
    if count == 0:
        return torch.zeros((0, 4))
    cols = masks.any(dim=1)
    rows = masks.any(dim=2)
    xs = torch.arange(width, device=masks.device)
    ys = torch.arange(height, device=masks.device)
    x1 = torch.where(cols, xs, width).min(dim=1).values
    x2 = torch.where(cols, xs, -1).max(dim=1).values + 1
    y1 = torch.where(rows, ys, height).min(dim=1).values
    y2 = torch.where(rows, ys, -1).max(dim=1).values + 1
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()
    return torch.where(cols.any(dim=1, keepdim=True), boxes, torch.zeros_like(boxes))


def box_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    import torch

    order = torch.argsort(scores, descending=True)
    areas = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    kept: list[int] = []
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    for index in order.tolist():
        if suppressed[index]:
            continue
        kept.append(index)
        top_left = torch.maximum(boxes[index, :2], boxes[:, :2])
        bottom_right = torch.minimum(boxes[index, 2:], boxes[:, 2:])
        overlap = (bottom_right - top_left).clamp(min=0).prod(dim=1)
        iou = overlap / (areas[index] + areas - overlap).clamp(min=1e-6)
        suppressed |= iou > threshold
    return kept


def generate_automatic(
    model: Any,
    prep: Sam2Preprocessing,
    image: Image.Image,
    settings: AutoSettings,
    progress: Progress | None = None,
) -> list[Prediction]:
    """Masks for every object found from a grid of single-point prompts."""
    import torch

    embeddings = _embeddings(model, prep, image)
    device, dtype = embeddings[-1].device, embeddings[-1].dtype
    grid = prep.scale_points(point_grid(settings.points_per_side, *image.size), image.size)
    batch = max(1, settings.points_per_batch)
    total = (len(grid) + batch - 1) // batch
    kept_logits: list[torch.Tensor] = []
    kept_scores: list[torch.Tensor] = []
    kept_stability: list[torch.Tensor] = []
    for step, start in enumerate(range(0, len(grid), batch), start=1):
        points = torch.from_numpy(grid[start : start + batch])[None, :, None].to(device, dtype)
        labels = torch.ones(points.shape[:3], dtype=torch.int32, device=device)
        outputs = model(
            image_embeddings=embeddings,
            input_points=points,
            input_labels=labels,
            multimask_output=True,
        )
        logits = outputs.pred_masks[0].flatten(0, 1).float()
        scores = outputs.iou_scores[0].flatten().float()
        stability = stability_scores(logits, settings.stability_score_offset)
        keep = (scores >= settings.pred_iou_thresh) & (stability >= settings.stability_score_thresh)
        keep &= (logits > 0).flatten(1).any(dim=1)
        logits, scores, stability = logits[keep], scores[keep], stability[keep]
        local = box_nms(mask_boxes(logits > 0).cpu(), scores.cpu(), settings.box_nms_thresh)
        kept_logits.append(logits[local].to("cpu", torch.float16))
        kept_scores.append(scores[local].cpu())
        kept_stability.append(stability[local].cpu())
        if progress is not None:
            progress(step, total)
    logits = torch.cat(kept_logits)
    scores = torch.cat(kept_scores)
    stability = torch.cat(kept_stability)
    low_res = logits.shape[-2:]
    scale = torch.tensor([image.width / low_res[1], image.height / low_res[0]] * 2)
    boxes = mask_boxes(logits > 0) * scale
    order = box_nms(boxes, scores, settings.box_nms_thresh)
    predictions: list[Prediction] = []
    for index in order:
        mask = _upscale(logits[index : index + 1], (image.height, image.width))[0]
        if int(mask.sum()) <= settings.min_area:
            continue
        predictions.append(
            Prediction(mask, float(scores[index]), stability=float(stability[index]))
        )
        if len(predictions) >= settings.max_masks:
            break
    return predictions
