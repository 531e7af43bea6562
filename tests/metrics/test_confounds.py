"""Rank correlation with a trivial map over normal tissue: what the benchmark reports beside each method."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from picard_ad.benchmark.evaluate import brightness_rank_correlation
from picard_ad.data.samples import LoadedSample
from picard_ad.methods import create_method
from picard_ad.metrics.confounds import mean_rank_correlation, rank_correlation


def test_rank_correlation_is_spearmans_rho():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert rank_correlation(x, x**3) == pytest.approx(1.0) and rank_correlation(x, -x) == pytest.approx(-1.0)
    # ranks 1 2 3 4 5 against 2 1 4 3 5: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 4 / 120 = 0.8
    assert rank_correlation(x, np.array([2.0, 1.0, 4.0, 3.0, 5.0])) == pytest.approx(0.8)
    assert math.isnan(rank_correlation(x, np.ones(5))) and math.isnan(rank_correlation(x[:2], x[:2]))
    with pytest.raises(ValueError, match="equal size"):
        rank_correlation(x, x[:4])


def test_mean_rank_correlation_uses_each_region_and_skips_undefined_images():
    reference = np.arange(16.0).reshape(4, 4)
    region = np.zeros((4, 4), bool)
    region[:2] = True  # the top half only: there the map follows the reference, below it is reversed
    score_map = np.where(region, reference, -reference)
    assert mean_rank_correlation([score_map], [reference], [region]) == pytest.approx(1.0)
    assert mean_rank_correlation([score_map], [reference], [~region]) == pytest.approx(-1.0)
    flat = np.zeros((4, 4))
    assert mean_rank_correlation([score_map, flat], [reference, reference], [region, region]) == pytest.approx(1.0)
    assert math.isnan(mean_rank_correlation([flat], [reference], [region]))


def test_brightness_correlation_is_one_for_brightness_and_ignores_lesions():
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.uniform(0.2, 0.8, (96, 96)), 3).astype(np.float32)
    tissue = np.ones((96, 96), bool)
    lesion = np.zeros((96, 96), bool)
    lesion[40:56, 40:56] = True
    item = LoadedSample(image, lesion, tissue)
    brightness = create_method("brightness").score_map(image)
    assert brightness_rank_correlation([brightness], [item]) == pytest.approx(1.0)
    assert brightness_rank_correlation([-brightness], [item]) == pytest.approx(-1.0)
    lesion_only = np.where(lesion, 100.0, brightness)  # what happens inside the lesion does not count
    assert brightness_rank_correlation([lesion_only], [item]) == pytest.approx(1.0)
    noise = rng.uniform(size=(96, 96))
    assert abs(brightness_rank_correlation([noise], [item])) < 0.05
