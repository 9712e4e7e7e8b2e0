"""Image segmentation with SAM 2 through transformers: masks for point and box prompts, or for
every object when no prompt is given. Masks come back as PNG files, COCO run-length encoding,
polygons and boxes.

Images are prepared by ``sam2_inputs`` (the transformers SAM 2 image processor needs
torchvision); loading and inference run in worker threads.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
    ModelRef,
    Usage,
)
from gpubridge.engines.local import pick_device, progress_event, resolve_source, threadsafe_emit
from gpubridge.engines.mask_encoding import describe_mask
from gpubridge.engines.media import decode_image, require
from gpubridge.engines.resident_engine import ResidentEngine
from gpubridge.engines.sam2_inputs import Sam2Preprocessing
from gpubridge.engines.sam2_predict import (
    AutoSettings,
    Prediction,
    Prompts,
    generate_automatic,
    predict_prompted,
)
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    from PIL import Image

_AUTO_KEYS = {f.name for f in fields(AutoSettings)}
_REQUEST_AUTO_KEYS = ("points_per_side", "max_masks")


@dataclass
class LoadedSam2:
    """A SAM 2 model and how its inputs are prepared."""

    model: Any
    preprocessing: Sam2Preprocessing


def load_sam2(source: str, device: str | None, dtype: str | None = None) -> LoadedSam2:
    """Load a SAM 2 checkpoint (image or video format) as the still-image ``Sam2Model`` that
    ``AutoModelForMaskGeneration`` maps both to."""
    import torch
    from transformers import AutoModelForMaskGeneration

    location, local_only = resolve_source(source)
    torch_dtype = getattr(torch, dtype) if dtype else torch.float32
    model: Any = AutoModelForMaskGeneration.from_pretrained(
        location, local_files_only=local_only, dtype=torch_dtype
    )
    model = model.to(pick_device(device)).eval()
    size = int(model.config.prompt_encoder_config.image_size)
    preprocessing = Sam2Preprocessing.from_pretrained(location, local_only, default_size=size)
    return LoadedSam2(model, preprocessing)


def parse_prompts(payload: dict[str, Any]) -> Prompts:
    """The request's points, point labels and boxes, checked for consistency."""
    points = [list(map(float, p)) for p in payload.get("points") or []]
    labels = [int(v) for v in payload.get("point_labels") or []]
    boxes = [list(map(float, b)) for b in payload.get("boxes") or []]
    if labels and len(labels) != len(points):
        raise InvalidInput(
            "point_labels must have one label per point",
            violations=[{"path": "point_labels", "message": "one label per point"}],
        )
    if points and len(boxes) > 1:
        raise InvalidInput(
            "points can be combined with at most one box (they describe one object)",
            violations=[{"path": "boxes", "message": "at most one box with points"}],
        )
    for box in boxes:
        if box[2] <= box[0] or box[3] <= box[1]:
            raise InvalidInput(
                "each box must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1",
                violations=[{"path": "boxes", "message": "empty box"}],
            )
    return Prompts(points, labels, boxes)


def _segment(
    loaded: LoadedSam2,
    image: Image.Image,
    payload: dict[str, Any],
    settings: AutoSettings,
    tolerance: float,
    progress: Any,
) -> dict[str, Any]:
    """Masks for ``payload``'s prompts, or for every object without prompts."""
    import torch

    prompts = parse_prompts(payload)
    multimask = bool(payload.get("multimask_output", False))
    with torch.inference_mode():
        if prompts.points or prompts.boxes:
            mode = "prompted"
            found = predict_prompted(loaded.model, loaded.preprocessing, image, prompts, multimask)
        else:
            mode = "automatic"
            found = generate_automatic(
                loaded.model, loaded.preprocessing, image, settings, progress
            )
    masks = [_describe(p, tolerance) for p in found]
    return {"mode": mode, "width": image.width, "height": image.height, "masks": masks}


def _describe(prediction: Prediction, tolerance: float) -> dict[str, Any]:
    extra: dict[str, Any] = {"score": round(prediction.score, 4)}
    if prediction.prompt is not None:
        extra["prompt"] = prediction.prompt
    if prediction.stability is not None:
        extra["stability_score"] = round(prediction.stability, 4)
    return describe_mask(prediction.mask, polygon_tolerance=tolerance, **extra)


class Sam2Segmenter(ResidentEngine[LoadedSam2]):
    """An ``Engine`` segmenting images with a local SAM 2 model.

    Options (backend, overridden per model): ``device``, ``dtype`` (e.g. ``bfloat16``),
    ``polygon_tolerance`` (pixels, default 1.0), and the automatic-mask settings of
    ``AutoSettings`` (``points_per_side``, ``pred_iou_thresh``, ``stability_score_thresh``, ...).
    """

    def load_model(self, ref: ModelRef) -> LoadedSam2:
        return load_sam2(ref.source, self.option(ref, "device"), self.option(ref, "dtype"))

    def _auto_settings(self, model: ModelRef, payload: dict[str, Any]) -> AutoSettings:
        asked = {k: payload[k] for k in _REQUEST_AUTO_KEYS if k in payload}
        values = {**self.options_for(model), **asked}
        chosen = {k: values[k] for k in _AUTO_KEYS if values.get(k) is not None}
        try:
            return AutoSettings(**chosen)
        except TypeError as exc:
            raise InvalidInput(f"bad automatic-mask setting: {exc}") from None

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        image = decode_image(require(request.media, "image_url"))
        payload = dict(request.input)
        parse_prompts(payload)
        settings = self._auto_settings(request.model, payload)
        tolerance = float(self.option(request.model, "polygon_tolerance", 1.0))
        loaded = await self.model(request.model, emit)
        send = threadsafe_emit(emit)

        def progress(step: int, total: int) -> None:
            send(progress_event("segmenting", step, total))

        output, seconds = await self.timed(
            lambda: _segment(loaded, image, payload, settings, tolerance, progress),
            "segmentation",
        )
        return EngineResult(
            output=output, usage=Usage(outputs=len(output["masks"]), compute_seconds=seconds)
        )


def create(config: BackendConfig, context: EngineContext) -> Sam2Segmenter:
    """The ``sam2-segmentation`` backend type."""
    return Sam2Segmenter(config, context)
