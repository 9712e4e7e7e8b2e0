"""Reading generated videos back."""

from __future__ import annotations

import io


def decoded(data: bytes) -> tuple[str, int, int, int]:
    """``(codec, frames, width, height)`` of a video decoded with PyAV."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(video=0))
        return stream.codec_context.name, len(frames), frames[0].width, frames[0].height
