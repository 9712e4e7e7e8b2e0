"""Encoding generated frames as a video file.

H.264 (``libx264``, yuv420p) in MP4 when PyAV has the encoder; else MPEG-4 Part 2 in MP4; else an
animated GIF written with Pillow. PyAV, NumPy and Pillow are imported inside the functions,
which run in worker threads.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

from gpubridge.engines.base import OutputFile
from gpubridge.errors import BackendError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

MP4_CODECS = ("libx264", "mpeg4")
"""MP4 encoders in order of preference."""


def to_uint8_frames(frames: Any) -> list[NDArray[np.uint8]]:
    """Frames as RGB ``uint8`` arrays (H, W, 3) with even sides (the last row or column is
    repeated when a side is odd).

    Accepts Pillow images, arrays of shape (H, W, C) or one array (frames, H, W, C); float
    arrays are read as values in [0, 1].
    """
    import numpy as np

    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        frames = list(frames)
    arrays: list[NDArray[np.uint8]] = []
    for frame in frames:
        if hasattr(frame, "convert"):
            data = np.asarray(frame.convert("RGB"))
        else:
            data = np.asarray(frame)
            if data.dtype != np.uint8:
                data = (np.clip(data.astype(np.float32), 0.0, 1.0) * 255.0).round()
                data = data.astype(np.uint8)
            if data.ndim == 2:
                data = np.repeat(data[:, :, None], 3, axis=2)
            elif data.shape[2] == 1:
                data = np.repeat(data, 3, axis=2)
            elif data.shape[2] == 4:
                data = data[:, :, :3]
        height, width = data.shape[:2]
        if height % 2 or width % 2:
            data = np.pad(data, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        arrays.append(np.ascontiguousarray(data, dtype=np.uint8))
    if not arrays:
        raise BackendError("the model produced no frames")
    if len({a.shape for a in arrays}) != 1:
        raise BackendError("the frames of a video differ in size")
    return arrays


def available_mp4_codec(codecs: Iterable[str] | None = None) -> str | None:
    """The preferred MP4 encoder that PyAV can use here, or ``None``."""
    import av

    names = set(av.codecs_available if codecs is None else codecs)
    for name in MP4_CODECS:
        if name not in names:
            continue
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: S112 - not an encoder in this build: try the next
            continue
        return name
    return None


def _mp4_bytes(frames: Sequence[NDArray[np.uint8]], fps: float, codec: str) -> bytes:
    import av
    from av.video.stream import VideoStream

    height, width = frames[0].shape[:2]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        rate = Fraction(fps).limit_denominator(1001)
        stream = cast(VideoStream, container.add_stream(codec, rate=rate))
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "medium"}
        else:
            stream.bit_rate = max(400_000, int(width * height * fps * 0.2))
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _gif_bytes(frames: Sequence[NDArray[np.uint8]], fps: float) -> bytes:
    from PIL import Image

    images = [Image.fromarray(array) for array in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(1000.0 / fps)),
        loop=0,
    )
    return buffer.getvalue()


def encode_video(frames: Any, fps: float, *, codecs: Iterable[str] | None = None) -> dict[str, Any]:
    """``{"video": OutputFile, "format": "mp4" | "gif", "codec": name}`` for ``frames`` at
    ``fps``; the file's metadata has frames, fps, width, height and duration_seconds.

    ``codecs`` overrides the encoder names PyAV reports as available.
    """
    if fps <= 0:
        raise BackendError("fps must be positive")
    arrays = to_uint8_frames(frames)
    height, width = arrays[0].shape[:2]
    codec = available_mp4_codec(codecs)
    metadata = {
        "frames": len(arrays),
        "fps": fps,
        "width": width,
        "height": height,
        "duration_seconds": round(len(arrays) / fps, 3),
    }
    if codec is not None:
        try:
            data = _mp4_bytes(arrays, fps, codec)
        except Exception as exc:
            raise BackendError(f"video encoding with {codec} failed: {exc!r}") from exc
        file = OutputFile(data, "video/mp4", {**metadata, "format": "mp4", "codec": codec})
        return {"video": file, "format": "mp4", "codec": codec}
    file = OutputFile(_gif_bytes(arrays, fps), "image/gif", {**metadata, "format": "gif"})
    return {"video": file, "format": "gif", "codec": "gif"}
