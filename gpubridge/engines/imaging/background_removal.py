"""Background removal with a salient-object segmentation network (BiRefNet, RMBG 2.0, U2-Net)
exported to ONNX and run with ONNX Runtime.

The network reads an RGB image resized to its input size and normalised with ImageNet
statistics, and writes one foreground map; the map (after a sigmoid for networks that output
logits) is resized back to the image and becomes its alpha channel. Loading and inference run in
worker threads; onnxruntime, NumPy and Pillow are imported inside the functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineRequest,
    EngineResult,
    ModelRef,
    OutputFile,
    Usage,
)
from gpubridge.engines.local import resolve_source
from gpubridge.engines.media import decode_image, image_file, require
from gpubridge.engines.resident_engine import ResidentEngine
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_ONNX_FILE = "onnx/model.onnx"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Segmenter:
    """A loaded ONNX segmentation network and how to feed it.

    ``activation`` is ``sigmoid`` for networks that output logits (BiRefNet) and ``none`` for
    those that output probabilities (RMBG 2.0, U2-Net); ``auto`` applies the sigmoid only when
    the output leaves [0, 1]. ``output_index`` picks the map among
    several outputs (the last by default; U2-Net's fused map is the first).
    """

    session: Any
    input_name: str
    size: tuple[int, int]
    activation: str = "auto"
    output_index: int = -1
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    lock: Any = field(default=None, repr=False)


def onnx_path(source: str, options: dict[str, Any]) -> Path:
    """The ONNX file of ``source``: ``options["onnx_file"]`` inside a local directory or a hub
    repository (read from the local cache when offline), or the file ``source`` itself. Without
    ``onnx_file``, a directory's only or first ``.onnx`` file stands in for the default name."""
    location, local_only = resolve_source(source)
    name = str(options.get("onnx_file", DEFAULT_ONNX_FILE))
    path = Path(location)
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / name
        if candidate.is_file() or "onnx_file" in options:
            return candidate
        found = sorted(path.rglob("*.onnx"))
        if not found:
            raise FileNotFoundError(f"no .onnx file in {path}")
        return found[0]
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(location, name, local_files_only=local_only))


def providers(device: str | None) -> list[str]:
    """ONNX Runtime execution providers for ``device`` (CUDA first when it is available)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = device or "cuda"
    if wanted.startswith("cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_segmenter(source: str, options: dict[str, Any], device: str | None = None) -> Segmenter:
    """Open the ONNX network of ``source`` in an ONNX Runtime session."""
    import threading

    import onnxruntime as ort

    path = onnx_path(source, options)
    session = ort.InferenceSession(str(path), providers=providers(device))
    first = session.get_inputs()[0]
    height, width = first.shape[2], first.shape[3]
    default = int(options.get("input_size", 1024))
    size = (
        width if isinstance(width, int) and width > 0 else default,
        height if isinstance(height, int) and height > 0 else default,
    )
    activation = str(options.get("output_activation", "auto"))
    if activation not in ("sigmoid", "none", "auto"):
        raise ValueError(f"output_activation must be sigmoid, none or auto, not {activation!r}")
    return Segmenter(
        session,
        first.name,
        size,
        activation,
        int(options.get("output_index", -1)),
        tuple(options.get("mean", IMAGENET_MEAN)),
        tuple(options.get("std", IMAGENET_STD)),
        threading.Lock(),
    )


def predict_alpha(segmenter: Segmenter, image: Image.Image) -> Image.Image:
    """The foreground probability of every pixel of ``image`` as an ``L`` mask of its size."""
    import numpy as np
    from PIL import Image

    resized = image.convert("RGB").resize(segmenter.size, Image.Resampling.BILINEAR)
    mean = np.asarray(segmenter.mean, np.float32)
    std = np.asarray(segmenter.std, np.float32)
    pixels = (np.asarray(resized, dtype=np.float32) / 255.0 - mean) / std
    batch = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])
    with segmenter.lock:
        outputs = segmenter.session.run(None, {segmenter.input_name: batch})
    output = outputs[segmenter.output_index]
    prediction: Any = np.asarray(output, dtype=np.float32).reshape(output.shape[-2:])
    logits = prediction.min() < 0.0 or prediction.max() > 1.0
    if segmenter.activation == "sigmoid" or (segmenter.activation == "auto" and logits):
        prediction = 1.0 / (1.0 + np.exp(-prediction))
    mask = Image.fromarray((np.clip(prediction, 0.0, 1.0) * 255.0).round().astype(np.uint8))
    return mask.resize(image.size, Image.Resampling.BILINEAR)


def parse_color(value: str) -> tuple[int, int, int]:
    """``#rrggbb`` as an RGB tuple."""
    text = value.removeprefix("#")
    if len(text) != 6:
        raise InvalidInput(f"background_color must look like #rrggbb, not {value!r}")
    try:
        return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
    except ValueError:
        raise InvalidInput(f"background_color must look like #rrggbb, not {value!r}") from None


def cut_out(
    image: Image.Image, mask: Image.Image, background: tuple[int, int, int] | None = None
) -> Image.Image:
    """``image`` with ``mask`` as its alpha (RGBA), or composited over a solid ``background``."""
    from PIL import Image

    rgba = image.convert("RGB").copy()
    rgba.putalpha(mask)
    if background is None:
        return rgba
    canvas = Image.new("RGBA", image.size, (*background, 255))
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


def removal_model(
    options: dict[str, Any], default: str = "onnx-community/BiRefNet-ONNX"
) -> ModelRef:
    """The segmentation model a composed engine names in its options: ``background_removal``
    (a source) and ``background_removal_options`` (its model options)."""
    source = str(options.get("background_removal") or default)
    extra = dict(options.get("background_removal_options") or {})
    return ModelRef("background-removal", source, extra)


def remover_for(config: BackendConfig, context: EngineContext | None) -> BackgroundRemover:
    """A background remover for an engine that composes it (same device, same model cache)."""
    options = {k: v for k, v in config.options.items() if k == "device"}
    name = f"{config.name}/background-removal"
    return BackgroundRemover(
        BackendConfig(name=name, type="background-removal", options=options), context
    )


@dataclass
class _Removed:
    image: OutputFile
    mask: OutputFile | None
    seconds: float


def _remove(segmenter: Segmenter, image: Image.Image, options: dict[str, Any]) -> _Removed:
    started = time.perf_counter()
    mask = predict_alpha(segmenter, image)
    seconds = time.perf_counter() - started
    color = options.get("background_color")
    background = parse_color(str(color)) if color else None
    fmt = str(options.get("output_format", "png"))
    result = image_file(cut_out(image, mask, background), fmt)
    mask_file = image_file(mask, fmt) if options.get("return_mask") else None
    return _Removed(result, mask_file, seconds)


class BackgroundRemover(ResidentEngine[Segmenter]):
    """An ``Engine`` cutting the foreground out of images with an ONNX segmentation network.

    Input: ``image_url`` (media), ``return_mask`` (also return the alpha mask),
    ``background_color`` (``#rrggbb`` instead of transparency), ``output_format``. Model
    options: ``onnx_file``, ``input_size`` (for networks with a dynamic input),
    ``output_activation`` (``sigmoid`` | ``none`` | ``auto``), ``output_index``, ``mean``, ``std``.
    Backend options: ``device``.
    """

    def load_model(self, ref: ModelRef) -> Segmenter:
        return load_segmenter(ref.source, ref.options, self.device)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        image = decode_image(require(request.media, "image_url"))
        if request.input.get("background_color"):
            parse_color(str(request.input["background_color"]))
        segmenter = await self.model(request.model, emit)
        removed, _ = await self.timed(
            lambda: _remove(segmenter, image, request.input), "background removal"
        )
        output: dict[str, Any] = {"image": removed.image}
        if removed.mask is not None:
            output["mask"] = removed.mask
        return EngineResult(output, Usage(outputs=1, compute_seconds=removed.seconds))


def create(config: BackendConfig, context: EngineContext) -> BackgroundRemover:
    """The ``background-removal`` backend type."""
    return BackgroundRemover(config, context)
