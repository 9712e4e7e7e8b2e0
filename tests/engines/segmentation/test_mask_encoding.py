from __future__ import annotations

import io

import numpy as np
from PIL import Image

from gpubridge.engines.mask_encoding import (
    describe_mask,
    mask_box,
    mask_polygons,
    rle_area,
    rle_decode,
    rle_encode,
)


def sample_mask() -> np.ndarray:
    mask = np.zeros((6, 9), dtype=bool)
    mask[1:4, 2:7] = True
    mask[5, 8] = True
    return mask


def test_rle_counts_run_column_major_from_a_zero_run() -> None:
    mask = np.array([[1, 0], [1, 1]], dtype=bool)
    assert rle_encode(mask) == {"size": [2, 2], "counts": [0, 2, 1, 1]}


def test_rle_round_trips_and_its_area_is_the_mask_area() -> None:
    mask = sample_mask()
    rle = rle_encode(mask)
    assert rle["size"] == [6, 9]
    assert sum(rle["counts"]) == mask.size
    assert rle_area(rle) == int(mask.sum())
    assert np.array_equal(rle_decode(rle), mask)


def test_an_empty_mask_is_one_zero_run() -> None:
    rle = rle_encode(np.zeros((3, 4), dtype=bool))
    assert rle["counts"] == [12]
    assert rle_area(rle) == 0


def test_box_spans_the_set_pixels_edge_to_edge() -> None:
    assert mask_box(sample_mask()) == [2, 1, 9, 6]
    assert mask_box(np.zeros((2, 2), dtype=bool)) == [0, 0, 0, 0]


def test_polygons_outline_each_region_and_thin_masks_get_their_rectangle() -> None:
    polygons = mask_polygons(sample_mask())
    assert len(polygons) == 1
    xs, ys = polygons[0][0::2], polygons[0][1::2]
    assert (min(xs), min(ys), max(xs), max(ys)) == (2, 1, 6, 3)
    single = np.zeros((4, 4), dtype=bool)
    single[2, 1] = True
    assert mask_polygons(single) == [[1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]]
    assert mask_polygons(np.zeros((4, 4), dtype=bool)) == []


def test_describe_gives_a_png_of_the_mask_size_with_area_and_extra_fields() -> None:
    mask = sample_mask()
    view = describe_mask(mask, score=0.5)
    assert view["score"] == 0.5
    assert view["area"] == int(mask.sum())
    png = Image.open(io.BytesIO(view["mask"].data))
    assert png.size == (9, 6)
    assert np.array_equal(np.asarray(png) > 127, mask)
    assert view["mask"].content_type == "image/png"
