"""Super-resolution with Swin2SR (transformers), tile by tile so memory stays bounded.

The image is cut into tiles of ``tile_size`` input pixels; each is upscaled with ``tile_overlap``
pixels of context on every side and only its own area is kept, so seams do not show. ``scale``
picks the checkpoint trained for it (model option ``checkpoints``: scale -> source); a model
trained for another factor is applied until it reaches the scale and the result resized to it
(an x4 model for scale 2 is resized down; an x2 model runs twice for scale 4).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
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
from gpubridge.engines.media import decode_image, image_file, require
from gpubridge.engines.resident_engine import ResidentEngine, pick_dtype
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from transformers import Swin2SRForImageSuperResolution

Progress = Callable[[int, int], None]

MAX_INPUT_PIXELS = 2048 * 2048


@dataclass
class Upscaler:
    """A loaded Swin2SR network, its factor and its device."""

    model: Swin2SRForImageSuperResolution
    factor: int
    window: int
    device: str


def load_upscaler(source: str, device: str | None = None) -> Upscaler:
    """Load a Swin2SR checkpoint (a local directory or an already cached hub id)."""
    from transformers import Swin2SRForImageSuperResolution

    location, local_only = resolve_source(source)
    target = pick_device(device)
    model: Any = Swin2SRForImageSuperResolution.from_pretrained(
        location, local_files_only=local_only, dtype=pick_dtype(None, target)
    )
    model.to(target)
    model.eval()
    return Upscaler(model, int(model.config.upscale), int(model.config.window_size), target)


def tiling(options: Mapping[str, Any]) -> tuple[int, int]:
    """The ``tile_size`` (input pixels per tile, default 256) and ``tile_overlap`` (default 16)
    backend options."""
    return int(options.get("tile_size", 256)), int(options.get("tile_overlap", 16))


def checkpoint_for(model: ModelRef, scale: int) -> str:
    """The source trained for ``scale`` (model option ``checkpoints``), else the model's own."""
    checkpoints = model.options.get("checkpoints") or {}
    return str(checkpoints.get(str(scale), model.source))


def tiles(width: int, height: int, size: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping ``(left, top, right, bottom)`` boxes of at most ``size`` pixels covering
    the image, row by row."""
    return [
        (x, y, min(x + size, width), min(y + size, height))
        for y in range(0, height, size)
        for x in range(0, width, size)
    ]


def _run_tile(upscaler: Upscaler, pixels: torch.Tensor) -> torch.Tensor:
    import torch
    from torch.nn import functional

    _, _, height, width = pixels.shape
    window = upscaler.window
    pad_h, pad_w = (-height) % window, (-width) % window
    if pad_h or pad_w:
        pixels = functional.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate")
    with torch.inference_mode():
        out = upscaler.model(pixel_values=pixels).reconstruction
    factor = upscaler.factor
    result: torch.Tensor = out[:, :, : height * factor, : width * factor].clamp(0.0, 1.0)
    return result


def upscale_once(
    upscaler: Upscaler, image: Image.Image, tile_size: int, overlap: int, progress: Progress
) -> Image.Image:
    """``image`` enlarged by the network's factor, tile by tile (``progress(done, total)``)."""
    import numpy as np
    import torch
    from PIL import Image

    width, height = image.size
    factor = upscaler.factor
    source = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    source = source.permute(2, 0, 1).unsqueeze(0)
    result = np.zeros((height * factor, width * factor, 3), dtype=np.uint8)
    boxes = tiles(width, height, tile_size)
    dtype = next(upscaler.model.parameters()).dtype
    for done, (left, top, right, bottom) in enumerate(boxes, start=1):
        x0, y0 = max(left - overlap, 0), max(top - overlap, 0)
        x1, y1 = min(right + overlap, width), min(bottom + overlap, height)
        crop = source[:, :, y0:y1, x0:x1].to(upscaler.device, dtype)
        out = _run_tile(upscaler, crop)[0].float().permute(1, 2, 0).cpu().numpy()
        keep = out[
            (top - y0) * factor : (bottom - y0) * factor,
            (left - x0) * factor : (right - x0) * factor,
        ]
        result[top * factor : bottom * factor, left * factor : right * factor] = (
            keep * 255.0
        ).round()
        progress(done, len(boxes))
    return Image.fromarray(result)


def upscale(
    upscaler: Upscaler,
    image: Image.Image,
    scale: int,
    *,
    tile_size: int = 256,
    overlap: int = 16,
    progress: Progress | None = None,
) -> Image.Image:
    """``image`` enlarged ``scale`` times: the network applied until it reaches ``scale``, then
    resized to exactly ``scale`` times the input."""
    from PIL import Image

    target = (image.width * scale, image.height * scale)
    passes, reached = 0, 1
    while reached < scale:
        passes, reached = passes + 1, reached * upscaler.factor
    counts = [
        len(tiles(image.width * upscaler.factor**i, image.height * upscaler.factor**i, tile_size))
        for i in range(passes)
    ]
    result = image.convert("RGB")
    for index in range(passes):

        def report(done: int, _total: int, before: int = sum(counts[:index])) -> None:
            if progress is not None:
                progress(before + done, sum(counts))

        result = upscale_once(upscaler, result, tile_size, overlap, report)
    if result.size != target:
        result = result.resize(target, Image.Resampling.LANCZOS)
    return result


class SuperResolution(ResidentEngine[Upscaler]):
    """An ``Engine`` enlarging images 2x or 4x with Swin2SR.

    Input: ``image_url`` (media), ``scale`` (2 or 4), ``output_format``. Model options:
    ``checkpoints`` (scale -> source). Backend options: ``device``, ``tile_size`` (input pixels
    per tile, default 256), ``tile_overlap`` (default 16).
    """

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        self._tile_size, self._overlap = tiling(self.options)

    def load_model(self, ref: ModelRef) -> Upscaler:
        return load_upscaler(ref.source, self.device)

    async def upscaler(self, model: ModelRef, scale: int, emit: Emit | None = None) -> Upscaler:
        """The checkpoint of ``model`` trained for ``scale`` (loaded once, kept resident)."""
        return await self.model(replace(model, source=checkpoint_for(model, scale)), emit)

    async def load(self, model: ModelRef) -> None:
        await self.upscaler(model, 4)

    async def enlarge(
        self, model: ModelRef, image: Image.Image, scale: int, emit: Emit
    ) -> tuple[Image.Image, float]:
        """``image`` upscaled ``scale`` times with ``model``, and the compute seconds."""
        upscaler = await self.upscaler(model, scale, emit)
        send = threadsafe_emit(emit)

        def progress(step: int, total: int) -> None:
            send(progress_event("upscaling", step, total))

        return await self.timed(
            lambda: upscale(
                upscaler,
                image,
                scale,
                tile_size=self._tile_size,
                overlap=self._overlap,
                progress=progress,
            ),
            "upscaling",
        )

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        image = decode_image(require(request.media, "image_url"))
        if image.width * image.height > MAX_INPUT_PIXELS:
            raise InvalidInput("image_url: the image is larger than 2048x2048 pixels")
        scale = int(request.input.get("scale", 4))
        if scale not in (2, 4):
            raise InvalidInput("scale must be 2 or 4")
        result, seconds = await self.enlarge(request.model, image, scale, emit)
        fmt = str(request.input.get("output_format", "png"))
        output: dict[str, Any] = {"image": image_file(result, fmt, scale=scale)}
        return EngineResult(output, Usage(outputs=1, compute_seconds=seconds))


def create(config: BackendConfig, context: EngineContext) -> SuperResolution:
    """The ``super-resolution`` backend type."""
    return SuperResolution(config, context)
