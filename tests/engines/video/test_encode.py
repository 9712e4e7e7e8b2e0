from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gpubridge.engines.video.common import fit_image, frames_for, oriented_size
from gpubridge.engines.video.encode import available_mp4_codec, encode_video, to_uint8_frames
from gpubridge.errors import BackendError
from tests.engines.video.video_files import decoded


def clip(count: int = 9, height: int = 32, width: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((count, height, width, 3), dtype=np.float32)


def test_frames_become_an_h264_mp4_that_decodes_back_frame_for_frame() -> None:
    out = encode_video(clip(), 8)
    video = out["video"]
    assert (out["format"], out["codec"]) == ("mp4", "libx264")
    assert video.content_type == "video/mp4"
    assert video.metadata == {
        "frames": 9,
        "fps": 8,
        "width": 48,
        "height": 32,
        "duration_seconds": 1.125,
        "format": "mp4",
        "codec": "libx264",
    }
    assert decoded(video.data) == ("h264", 9, 48, 32)


def test_odd_sides_are_padded_to_even_ones_for_yuv420p() -> None:
    video = encode_video(clip(3, 31, 33), 24)["video"]
    assert (video.metadata["width"], video.metadata["height"]) == (34, 32)
    assert decoded(video.data)[1:] == (3, 34, 32)


def test_pillow_images_and_uint8_arrays_are_accepted() -> None:
    images = [Image.new("RGB", (16, 8), (i * 20, 0, 0)) for i in range(4)]
    arrays = to_uint8_frames(images)
    assert [a.shape for a in arrays] == [(8, 16, 3)] * 4
    assert arrays[3][0, 0].tolist() == [60, 0, 0]
    gray = to_uint8_frames([np.zeros((4, 4), dtype=np.uint8)])
    assert gray[0].shape == (4, 4, 3)


def test_without_h264_mpeg4_is_used_in_mp4() -> None:
    out = encode_video(clip(5), 10, codecs={"mpeg4", "gif"})
    assert (out["format"], out["codec"]) == ("mp4", "mpeg4")
    assert decoded(out["video"].data) == ("mpeg4", 5, 48, 32)


def test_without_an_mp4_encoder_the_clip_is_an_animated_gif() -> None:
    out = encode_video(clip(5), 10, codecs=set())
    assert (out["format"], out["codec"]) == ("gif", "gif")
    assert out["video"].content_type == "image/gif"
    gif = Image.open(io.BytesIO(out["video"].data))
    assert (gif.n_frames, gif.size) == (5, (48, 32))
    assert gif.info["duration"] == 100


def test_an_encoder_name_without_an_encoder_is_skipped() -> None:
    assert available_mp4_codec({"h264_not_real", "mpeg4"}) == "mpeg4"
    assert available_mp4_codec(set()) is None


def test_no_frames_or_mixed_sizes_are_backend_errors() -> None:
    with pytest.raises(BackendError):
        encode_video([], 8)
    with pytest.raises(BackendError):
        encode_video([np.zeros((8, 8, 3)), np.zeros((4, 4, 3))], 8)


def test_frame_counts_fit_the_vae_temporal_compression() -> None:
    assert [frames_for(n, 8) for n in (9, 10, 16, 121, 4)] == [9, 9, 9, 121, 9]
    assert [frames_for(n, 4) for n in (81, 82, 9)] == [81, 81, 9]
    assert frames_for(14, 1) == 14


def test_the_first_frame_is_cropped_not_stretched_and_oriented_like_the_image() -> None:
    portrait = Image.new("RGB", (60, 100))
    assert oriented_size(portrait, 1024, 576) == (576, 1024)
    assert oriented_size(Image.new("RGB", (100, 60)), 1024, 576) == (1024, 576)
    assert oriented_size(Image.new("RGB", (50, 50)), 1024, 576) == (1024, 576)
    assert fit_image(portrait, 32, 32).size == (32, 32)
