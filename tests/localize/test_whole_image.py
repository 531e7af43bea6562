"""The whole-image path: an image scored at a network's input size, mapped back onto its own pixels."""

import numpy as np
import pytest

from picard_ad.errors import ConfigError
from picard_ad.localize import resized_heatmap
from picard_ad.localize.whole_image import fitted_shape


def test_a_scorer_that_returns_its_input_gives_back_a_smoothed_image_in_place():
    rows, cols = np.mgrid[0:120, 0:80]
    image = (rows / 119.0).astype(np.float32)  # a vertical ramp: resizing preserves it up to interpolation
    seen = []

    def identity(small):
        seen.append(small.copy())
        return {"same": small}

    heatmap = resized_heatmap(image, identity, input_size=60)["same"]
    assert heatmap.array.shape == (120, 80) and heatmap.array.dtype == np.float32 and heatmap.grid is None
    assert seen[0].shape == (60, 60) and not seen[0][:, 40:].any()  # 120 x 80 fits as 60 x 40; the rest is padding
    interior = slice(4, -4)
    np.testing.assert_allclose(heatmap.array[interior, interior], image[interior, interior], atol=0.02)
    assert heatmap.settings == {"input_size": 60, "keep_aspect": True} and heatmap.timings["total_s"] >= 0


def test_a_blob_lands_where_it_was_and_stretching_is_a_setting():
    image = np.zeros((100, 200), np.float32)
    image[40:60, 140:160] = 1.0
    blob = resized_heatmap(image, lambda small: {"x": small}, input_size=50)["x"].array
    row, col = np.unravel_index(np.argmax(blob), blob.shape)
    assert 40 <= row < 60 and 140 <= col < 160
    stretched = resized_heatmap(image, lambda small: {"x": small}, input_size=50, keep_aspect=False)["x"].array
    assert stretched.shape == (100, 200) and np.argmax(stretched) // 200 in range(40, 60)
    assert fitted_shape((100, 200), 50, keep_aspect=True) == (25, 50)
    assert fitted_shape((100, 200), 50, keep_aspect=False) == (50, 50)


def test_wrong_maps_and_sizes_are_refused():
    image = np.zeros((40, 40), np.float32)
    with pytest.raises(RuntimeError, match="is a \\(10, 10\\) map for a 32 px input"):
        resized_heatmap(image, lambda small: {"x": np.zeros((10, 10))}, input_size=32)
    with pytest.raises(ConfigError, match="input_size"):
        resized_heatmap(image, lambda small: {"x": small}, input_size=0)
