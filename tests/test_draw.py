"""draw.py: pure drawing functions on real numpy images."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from densecnn.draw import color_for, default_line_width, draw_detections
from densecnn.results import Detections

NAMES = {0: "person", 1: "car", 2: "a rather long class name"}


def _scene(height: int = 240, width: int = 320) -> np.ndarray:
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    cv2.circle(image, (width // 2, height // 2), min(height, width) // 4, (30, 160, 30), -1)
    return image


def _dets(boxes: list[list[float]], class_ids: list[int], scores: list[float] | None = None) -> Detections:
    scores = scores if scores is not None else [0.87] * len(boxes)
    return Detections(np.array(boxes, dtype=np.float32), np.array(scores), np.array(class_ids), NAMES)


def test_color_for_is_deterministic_bgr_and_neighbours_differ() -> None:
    colors = [color_for(i) for i in range(100)]
    assert colors == [color_for(i) for i in range(100)]
    for c in colors:
        assert len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
    for a, b in itertools.pairwise(colors):
        assert sum(abs(x - y) for x, y in zip(a, b, strict=True)) > 100
    assert len(set(colors[:80])) == 80  # the COCO classes all get their own colour


def test_input_untouched_and_new_array_returned() -> None:
    image = _scene()
    before = image.copy()
    out = draw_detections(image, _dets([[20, 30, 80, 90]], [1]))
    assert np.array_equal(image, before)
    assert out is not image and not np.shares_memory(out, image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)


def test_box_edge_pixels_have_class_colour() -> None:
    image = _scene()
    out = draw_detections(image, _dets([[20, 30, 80, 90], [150, 100, 300, 200]], [0, 1]), line_width=2)
    c0, c1 = color_for(0), color_for(1)
    # Box [20, 30, 80, 90] covers pixel columns 20..79 and rows 30..89.
    for y, x in [(60, 20), (60, 79), (89, 50)]:
        assert tuple(out[y, x]) == c0
    for y, x in [(150, 150), (150, 299), (199, 220)]:
        assert tuple(out[y, x]) == c1
    assert tuple(out[60, 50]) == tuple(image[60, 50])  # the inside is not filled


def test_label_has_background_and_stays_inside_the_image() -> None:
    image = np.zeros((120, 200, 3), dtype=np.uint8)
    # A box touching the top-right corner with a long name: the label must be moved inside.
    out = draw_detections(image, _dets([[150, 0, 200, 40]], [2]), line_width=2)
    color = np.array(color_for(2))
    label_rows = out[2:12]
    filled = np.all(label_rows == color, axis=-1)
    assert filled[:, :150].any(), "label shifted left of the box so that it fits"
    assert filled[:, -1].any()
    without_scores = draw_detections(image, _dets([[150, 0, 200, 40]], [2]), show_scores=False)
    assert not np.array_equal(out, without_scores)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (3, 5), (16, 9), (3000, 4000)])
def test_tiny_and_large_images(height: int, width: int) -> None:
    image = np.full((height, width, 3), 200, dtype=np.uint8)
    dets = _dets([[0, 0, width, height], [width * 0.25, height * 0.25, width * 0.75, height * 0.75]], [0, 1])
    out = draw_detections(image, dets)
    assert out.shape == image.shape
    assert tuple(out[0, 0]) != (200, 200, 200)
    assert np.all(image == 200)


def test_default_line_width_scales_with_image() -> None:
    assert default_line_width(1, 1) == 1
    assert default_line_width(3000, 4000) > default_line_width(240, 320) >= 1


def test_degenerate_boxes_are_ignored() -> None:
    image = _scene()
    dets = _dets([[50, 50, 50, 80], [-100, -100, -10, -10], [np.nan, 0, 10, 10]], [0, 1, 2])
    assert np.array_equal(draw_detections(image, dets), image)


def test_no_detections_returns_equal_copy() -> None:
    image = _scene()
    out = draw_detections(image, Detections())
    assert np.array_equal(out, image) and out is not image


def test_rejects_non_bgr_images() -> None:
    with pytest.raises(ValueError, match="HxWx3"):
        draw_detections(np.zeros((10, 10), dtype=np.uint8), _dets([[1, 1, 5, 5]], [0]))
