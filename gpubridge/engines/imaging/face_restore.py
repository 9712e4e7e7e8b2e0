"""Face restoration: YuNet finds the faces, each is aligned to the FFHQ crop, restored by
CodeFormer or GFPGAN (their ONNX exports, run with ONNX Runtime) and pasted back; the rest of
the image is enlarged by ``upscale`` with Swin2SR when ``background_enhance`` is set, else
resized.

Model options: ``onnx_file`` (the restoration network in the model's source),
``detector_source`` (default: the model's source) and ``detector_file``, ``background_upscaler``
(a Swin2SR source), ``fidelity_input`` (the name of CodeFormer's fidelity input, ``weight``),
``score_threshold``, ``max_faces``. Backend options: ``device``, ``tile_size``, ``tile_overlap``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import (
    BackendConfig,
    Emit,
    EngineContext,
    EngineEvent,
    EngineRequest,
    EngineResult,
    ModelRef,
    Usage,
)
from gpubridge.engines.imaging.background_removal import onnx_path, providers
from gpubridge.engines.imaging.faces import FaceDetector, align, detect, load_detector, paste
from gpubridge.engines.imaging.upscale import Upscaler, load_upscaler, tiling, upscale
from gpubridge.engines.local import progress_event, threadsafe_emit
from gpubridge.engines.media import decode_image, image_file, require
from gpubridge.engines.resident_engine import ResidentEngine
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from PIL import Image

DEFAULT_DETECTOR_FILE = "yunet_2023_mar.onnx"
MAX_OUTPUT_PIXELS = 8192 * 8192


@dataclass
class Restorer:
    """A loaded face restoration network: its input names and crop size."""

    session: Any
    input_name: str
    fidelity_name: str | None
    size: int
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_restorer(source: str, options: dict[str, Any], device: str | None) -> Restorer:
    """Open the restoration network ``options["onnx_file"]`` of ``source``."""
    import onnxruntime as ort

    path = onnx_path(source, {"onnx_file": options.get("onnx_file", "codeformer.onnx")})
    session = ort.InferenceSession(str(path), providers=providers(device))
    fidelity = str(options.get("fidelity_input", "weight"))
    inputs = session.get_inputs()
    image_input = next(i for i in inputs if i.name != fidelity)
    size = image_input.shape[-1]
    return Restorer(
        session,
        image_input.name,
        fidelity if any(i.name == fidelity for i in inputs) else None,
        size if isinstance(size, int) and size > 0 else 512,
    )


def restore_face(restorer: Restorer, crop: NDArray[np.uint8], fidelity: float) -> NDArray[np.uint8]:
    """The restored version of an aligned BGR face crop (RGB in [-1, 1] in and out)."""
    import cv2
    import numpy as np

    rgb = crop[..., ::-1].astype(np.float32) / 255.0
    batch = np.ascontiguousarray(((rgb - 0.5) / 0.5).transpose(2, 0, 1)[None])
    feeds: dict[str, Any] = {restorer.input_name: batch}
    if restorer.fidelity_name is not None:
        feeds[restorer.fidelity_name] = np.array([fidelity], np.float64)
    with restorer.lock:
        out = restorer.session.run(None, feeds)[0][0]
    face = ((np.clip(out, -1.0, 1.0) + 1.0) * 127.5).round().astype(np.uint8)
    bgr = np.ascontiguousarray(face.transpose(1, 2, 0)[..., ::-1])
    if bgr.shape[0] != crop.shape[0]:
        bgr = cv2.resize(bgr, crop.shape[1::-1], interpolation=cv2.INTER_AREA)
    return bgr


@dataclass
class _Job:
    image: Image.Image
    scale: int
    fidelity: float
    max_faces: int
    tile_size: int
    overlap: int


@dataclass
class _Restored:
    image: Image.Image
    faces: int


def _restore(
    job: _Job,
    detector: FaceDetector,
    restorer: Restorer,
    upscaler: Upscaler | None,
    send: Callable[[EngineEvent], None],
) -> _Restored:
    import numpy as np
    from PIL import Image

    source = np.ascontiguousarray(np.asarray(job.image)[..., ::-1])
    faces = detect(detector, source, job.max_faces)
    if job.scale == 1:
        base = job.image
    elif upscaler is not None:
        base = upscale(
            upscaler,
            job.image,
            job.scale,
            tile_size=job.tile_size,
            overlap=job.overlap,
            progress=lambda step, total: send(progress_event("upscaling", step, total)),
        )
    else:
        size = (job.image.width * job.scale, job.image.height * job.scale)
        base = job.image.resize(size, Image.Resampling.BICUBIC)
    bgr = np.ascontiguousarray(np.asarray(base)[..., ::-1])
    for index, face in enumerate(faces, start=1):
        crop, affine = align(bgr, face.landmarks * job.scale, restorer.size)
        bgr = paste(bgr, restore_face(restorer, crop, job.fidelity), affine)
        send(progress_event("restoring_faces", index, len(faces)))
    result = Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))
    return _Restored(result, len(faces))


def read_job(request: EngineRequest, tile_size: int, overlap: int) -> _Job:
    """The job's image and settings; ``InvalidInput`` for values out of range."""
    data = request.input
    scale = int(data.get("upscale", 2))
    if scale not in (1, 2, 4):
        raise InvalidInput("upscale must be 1, 2 or 4")
    fidelity = float(data.get("fidelity", 0.5))
    if not 0.0 <= fidelity <= 1.0:
        raise InvalidInput("fidelity must be between 0 and 1")
    image = decode_image(require(request.media, "image_url"))
    if image.width * image.height * scale * scale > MAX_OUTPUT_PIXELS:
        raise InvalidInput("image_url: the upscaled image would exceed 8192x8192 pixels")
    max_faces = int(request.model.options.get("max_faces", 20))
    return _Job(image, scale, fidelity, max_faces, tile_size, overlap)


class FaceRestoration(ResidentEngine[Restorer]):
    """An ``Engine`` restoring the faces in photos (see the module docstring for options)."""

    def __init__(self, config: BackendConfig, context: EngineContext | None = None) -> None:
        super().__init__(config, context)
        self._tile_size, self._overlap = tiling(self.options)

    def resident_key(self, ref: ModelRef) -> str:
        return f"{ref.source}#{ref.options.get('onnx_file', '')}"

    def load_model(self, ref: ModelRef) -> Restorer:
        """The model's restoration network."""
        return load_restorer(ref.source, ref.options, self.device)

    async def detector(self, model: ModelRef, emit: Emit | None = None) -> FaceDetector:
        """The model's face detector (loaded once, kept resident)."""
        source = str(model.options.get("detector_source", model.source))
        name = str(model.options.get("detector_file", DEFAULT_DETECTOR_FILE))
        threshold = float(model.options.get("score_threshold", 0.7))

        def load() -> FaceDetector:
            return load_detector(str(onnx_path(source, {"onnx_file": name})), threshold)

        return await self.resident(f"{source}#{name}", load, emit=emit, label="face-detector")

    async def upscaler(self, model: ModelRef, emit: Emit | None = None) -> Upscaler | None:
        """The Swin2SR model for ``background_enhance``, when the model names one."""
        source = model.options.get("background_upscaler")
        if not source:
            return None
        return await self.resident(
            str(source),
            lambda: load_upscaler(str(source), self.device),
            emit=emit,
            label=str(source),
        )

    async def load(self, model: ModelRef) -> None:
        await self.detector(model)
        await self.model(model)

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        job = read_job(request, self._tile_size, self._overlap)
        detector = await self.detector(request.model, emit)
        restorer = await self.model(request.model, emit)
        enhance = bool(request.input.get("background_enhance")) and job.scale > 1
        upscaler = await self.upscaler(request.model, emit) if enhance else None
        send = threadsafe_emit(emit)
        done, seconds = await self.timed(
            lambda: _restore(job, detector, restorer, upscaler, send), "face restoration"
        )
        fmt = str(request.input.get("output_format", "png"))
        output = {"image": image_file(done.image, fmt, faces=done.faces), "faces": done.faces}
        return EngineResult(output, Usage(outputs=1, compute_seconds=seconds))


def create(config: BackendConfig, context: EngineContext) -> FaceRestoration:
    """The ``face-restoration`` backend type."""
    return FaceRestoration(config, context)
