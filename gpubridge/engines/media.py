"""Decoding media inputs and encoding media outputs for the local runtimes.

Pillow, NumPy and PyAV are imported inside the functions, which run in worker threads.
Audio decoding goes through PyAV (FFmpeg), so every common container and codec is read without
torchaudio; WAV output is written with the standard library.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gpubridge.engines.base import MediaInput, OutputFile
from gpubridge.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from PIL import Image

IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def require(media: Mapping[str, MediaInput], field: str) -> MediaInput:
    """The media input ``field`` of a request, or ``InvalidInput`` when it is missing."""
    item = media.get(field)
    if item is None:
        raise InvalidInput(
            f"{field} is required", violations=[{"path": field, "message": "is required"}]
        )
    return item


def decode_image(media: MediaInput, mode: str = "RGB") -> Image.Image:
    """The input as a Pillow image in ``mode`` (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    try:
        opened = Image.open(io.BytesIO(media.data))
        image: Image.Image = ImageOps.exif_transpose(opened) or opened
        return image.convert(mode)
    except Exception as exc:
        raise InvalidInput(
            f"{media.field}: not a readable image ({exc})", code="invalid_media"
        ) from None


def decode_audio(media: MediaInput, sampling_rate: int = 16_000) -> NDArray[np.float32]:
    """The input as mono float32 samples in [-1, 1] at ``sampling_rate`` (PyAV resamples)."""
    import av
    import numpy as np

    try:
        chunks: list[Any] = []
        container: Any
        with av.open(io.BytesIO(media.data)) as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except Exception as exc:
        raise InvalidInput(
            f"{media.field}: not readable audio ({exc})", code="invalid_media"
        ) from None
    if not chunks:
        raise InvalidInput(f"{media.field}: the audio has no samples", code="invalid_media")
    samples: NDArray[np.float32] = np.concatenate(chunks).astype(np.float32, copy=False)
    return samples


def image_file(image: Image.Image, fmt: str = "png", **metadata: Any) -> OutputFile:
    """An image output (PNG, JPEG or WebP) with its width and height."""
    fmt = fmt.lower()
    if fmt not in IMAGE_TYPES:
        raise InvalidInput(f"output_format must be one of {sorted(IMAGE_TYPES)}")
    if fmt == "jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt.upper())
    return OutputFile(
        buffer.getvalue(),
        IMAGE_TYPES[fmt],
        {"width": image.width, "height": image.height, **metadata},
    )


def wav_bytes(samples: Any, sampling_rate: int) -> bytes:
    """16-bit PCM WAV of mono (or channels-last) float samples in [-1, 1]."""
    import numpy as np

    data = np.asarray(samples, dtype=np.float32)
    channels = 1 if data.ndim == 1 else data.shape[-1]
    pcm = (np.clip(data, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(sampling_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def audio_file(samples: Any, sampling_rate: int, fmt: str = "wav", **metadata: Any) -> OutputFile:
    """An audio output: WAV, or MP3/FLAC/Opus encoded with PyAV, with its duration."""
    import numpy as np

    data = np.asarray(samples, dtype=np.float32)
    duration = round(float(data.shape[0]) / sampling_rate, 3)
    info = {"duration_seconds": duration, "sampling_rate": sampling_rate, **metadata}
    fmt = fmt.lower()
    if fmt == "wav":
        return OutputFile(wav_bytes(data, sampling_rate), "audio/wav", info)
    return OutputFile(_encode_with_av(data, sampling_rate, fmt), _AUDIO_TYPES[fmt], info)


_AUDIO_TYPES = {"mp3": "audio/mpeg", "flac": "audio/flac", "opus": "audio/ogg"}
_AUDIO_CODECS = {"mp3": ("mp3", "libmp3lame"), "flac": ("flac", "flac"), "opus": ("ogg", "libopus")}


def _encode_with_av(data: Any, sampling_rate: int, fmt: str) -> bytes:
    import av
    import numpy as np

    if fmt not in _AUDIO_CODECS:
        raise InvalidInput(f"format must be one of {sorted(['wav', *_AUDIO_CODECS])}")
    container_format, codec = _AUDIO_CODECS[fmt]
    rate = 48_000 if fmt == "opus" else sampling_rate
    buffer = io.BytesIO()
    container: Any
    with av.open(buffer, "w", format=container_format) as container:
        stream: Any = container.add_stream(codec, rate=rate, layout="mono")
        pcm = (np.clip(data, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = sampling_rate
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def media_duration_seconds(media: MediaInput) -> float | None:
    """The playing time of an audio or video input from its container (PyAV), or ``None`` when
    the container does not say; decodes the whole audio stream only for headerless formats."""
    try:
        import av
    except ImportError:  # a gateway with remote backends only
        return None
    try:
        with av.open(io.BytesIO(media.data), mode="r") as container:
            if container.duration is not None:
                return float(container.duration) / 1_000_000  # av.time_base is microseconds
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            samples = 0
            for frame in container.decode(stream):
                samples += int(frame.samples)
            return samples / stream.rate if stream.rate else None
    except Exception:
        return None
