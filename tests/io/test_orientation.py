"""Breast side detection and the left-aligning flip with its inverse."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from picard_ad.io import Orientation, detect_breast_side, read_image
from picard_ad.io.writers import write_png


def _left_breast(rows: int = 120, cols: int = 90) -> np.ndarray:
    """A half-ellipse of tissue (0.5..0.8) against the left edge, dark background (0.02)."""
    y, x = np.mgrid[0:rows, 0:cols]
    inside = (x / (0.6 * cols)) ** 2 + ((y - rows / 2) / (0.45 * rows)) ** 2 <= 1
    return np.where(inside, 0.8 - 0.3 * x / cols, 0.02).astype(np.float32)


def test_left_and_right_breasts():
    breast = _left_breast()
    assert detect_breast_side(breast) == "L"
    assert detect_breast_side(breast[:, ::-1]) == "R"


def test_bright_label_on_the_empty_side_does_not_win():
    breast = _left_breast()
    breast[5:20, -12:] = 1.0  # a view label ("RMLO") in the top corner of the empty side
    assert detect_breast_side(breast) == "L"
    assert detect_breast_side(breast[:, ::-1]) == "R"


def test_black_padding_on_both_sides_is_skipped():
    padded = np.pad(_left_breast(), ((0, 0), (25, 25)))  # CDD-CESM style: the breast does not reach the edge
    assert detect_breast_side(padded) == "L"
    assert detect_breast_side(padded[:, ::-1]) == "R"


def test_bright_skin_rim_near_the_nipple_does_not_win():
    rows, cols = 120, 90
    y, x = np.mgrid[0:rows, 0:cols]
    radius = (x / (0.6 * cols)) ** 4 + ((y - rows / 2) / (0.45 * rows)) ** 2  # a blunt breast
    breast = np.where(radius <= 1, 0.15, 0.02)  # faint parenchyma...
    breast[(radius > 0.85) & (radius <= 1)] = 1.0  # ...inside a bright contrast-enhanced skin rim
    # The rim makes the nipple-side band brighter on average than the chest-wall band; coverage still says L.
    apex = int(0.6 * cols) + 1  # first column right of the tissue
    band = round(0.05 * apex)
    assert breast[:, apex - band : apex].mean() > breast[:, :band].mean()
    assert detect_breast_side(breast) == "L"
    assert detect_breast_side(breast[:, ::-1]) == "R"


def test_empty_image_defaults_to_left_and_bad_shapes_are_refused():
    assert detect_breast_side(np.zeros((10, 10))) == "L"
    with pytest.raises(ValueError, match="expected a non-empty"):
        detect_breast_side(np.zeros((2, 3, 4)))


def test_orientation_round_trip_on_images_and_stacks():
    image = np.arange(12).reshape(3, 4)
    flip = Orientation(flip_horizontal=True)
    np.testing.assert_array_equal(flip.apply(image), image[:, ::-1])
    np.testing.assert_array_equal(flip.undo(flip.apply(image)), image)
    stack = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    np.testing.assert_array_equal(flip.undo(flip.apply(stack)), stack)
    np.testing.assert_array_equal(flip.apply(stack)[1, 2], stack[1, 2, ::-1])
    np.testing.assert_array_equal(Orientation().apply(image), image)
    with pytest.raises(ValueError):
        flip.apply(np.arange(3))


def test_orientation_dict_round_trip():
    for orientation in (Orientation(), Orientation(flip_horizontal=True)):
        assert Orientation.from_dict(json.loads(json.dumps(orientation.to_dict()))) == orientation
    with pytest.raises(ValueError, match="unknown orientation keys"):
        Orientation.from_dict({"flip_horizontal": True, "rotate": 180})
    with pytest.raises(ValueError, match="true or false"):
        Orientation.from_dict({"flip_horizontal": "yes"})


def test_read_image_left_aligns_and_results_map_back(tmp_path):
    right = _left_breast()[:, ::-1]
    write_png(tmp_path / "right.png", right, bit_depth=16)
    stored = read_image(tmp_path / "right.png")
    aligned = read_image(tmp_path / "right.png", align_left=True)
    assert aligned.meta.breast_side == "R" and aligned.meta.orientation == Orientation(flip_horizontal=True)
    assert stored.meta.breast_side is None and stored.meta.orientation == Orientation()
    assert detect_breast_side(aligned.pixels) == "L" and aligned.pixels.flags.c_contiguous
    np.testing.assert_array_equal(aligned.meta.orientation.undo(aligned.pixels), stored.pixels)
    heatmap = np.zeros_like(aligned.pixels)
    heatmap[10, 3] = 1.0  # a finding near the left edge of the aligned image is near the right edge of the file
    assert np.argwhere(aligned.meta.orientation.undo(heatmap)).tolist() == [[10, right.shape[1] - 4]]
    assert aligned.meta.to_dict()["orientation"] == {"flip_horizontal": True}


def test_left_sided_image_is_not_flipped(tmp_path):
    Image.fromarray((_left_breast() * 255).astype(np.uint8)).save(tmp_path / "left.png")
    image = read_image(tmp_path / "left.png", align_left=True)
    assert image.meta.breast_side == "L" and not image.meta.orientation.flip_horizontal
    np.testing.assert_array_equal(image.pixels, read_image(tmp_path / "left.png").pixels)
