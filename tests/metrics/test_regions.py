"""AUPRO: hand-made maps with known answers, a direct per-threshold computation, and the upper bound of 1."""

import numpy as np
import pytest
from scipy import ndimage

from picard_ad.metrics.regions import (
    ProAccumulator,
    ProCurve,
    area_under_pro,
    aupro,
    pro_curve,
)


def _two_regions(shape=(40, 40)):
    """A 6x6 square and an L-shaped region of 36 pixels, far apart."""
    mask = np.zeros(shape, dtype=bool)
    mask[4:10, 4:10] = True
    mask[25:35, 25:28] = True
    mask[32:35, 28:30] = True
    return mask


def _direct_aupro(heatmaps, masks, fpr_limit):
    """PRO and FPR thresholded at every distinct score with explicit masks, integrated with interpolation."""
    regions = [
        (index, labels == k)
        for index, mask in enumerate(masks)
        for labels, n in [ndimage.label(mask, structure=np.ones((3, 3)))]
        for k in range(1, n + 1)
    ]
    negatives = sum(int((~mask).sum()) for mask in masks)
    points = [(0.0, 0.0)]
    for threshold in np.unique(np.concatenate([h.ravel() for h in heatmaps]))[::-1]:
        predicted = [h >= threshold for h in heatmaps]
        overlap = np.mean([(predicted[i] & region).sum() / region.sum() for i, region in regions])
        false = sum(int((p & ~m).sum()) for p, m in zip(predicted, masks)) / negatives
        points.append((false, overlap))
    fpr, pro = np.array(points).T
    grid_end = np.interp(fpr_limit, fpr, pro)  # fpr is non-decreasing; vertical steps only at equal fpr
    kept = fpr <= fpr_limit
    xs, ys = np.r_[fpr[kept], fpr_limit], np.r_[pro[kept], grid_end]
    return np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2) / fpr_limit


def test_perfect_map_scores_one():
    mask = _two_regions()
    assert aupro([mask.astype(np.float32)], [mask]) == 1.0
    assert aupro([mask * 2.0 + 1.0], [mask], fpr_limit=0.05) == 1.0


def test_map_covering_one_of_two_equal_regions_scores_one_half():
    mask = np.zeros((30, 30), dtype=bool)
    mask[3:8, 3:8] = True
    mask[20:25, 20:25] = True
    rng = np.random.default_rng(1)
    heatmap = rng.uniform(0.0, 0.1, mask.shape)
    heatmap[3:8, 3:8] = 1.0  # found
    heatmap[20:25, 20:25] = -1.0  # missed: below every background pixel
    assert aupro([heatmap], [mask]) == pytest.approx(0.5, abs=1e-12)


def test_small_region_weighs_as_much_as_a_large_one():
    # One 2x2 region found perfectly, one 10x10 region missed: PRO 0.5 although 96% of lesion pixels are missed.
    mask = np.zeros((40, 40), dtype=bool)
    mask[2:4, 2:4] = True
    mask[20:30, 20:30] = True
    heatmap = np.zeros(mask.shape)
    heatmap[2:4, 2:4] = 1.0
    heatmap[20:30, 20:30] = -1.0
    assert aupro([heatmap], [mask]) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("fpr_limit", [0.3, 0.07, 1.0])
def test_matches_direct_computation_with_ties_over_several_images(fpr_limit):
    rng = np.random.default_rng(7)
    masks = [_two_regions(), np.zeros((40, 40), dtype=bool), _two_regions()[::-1]]
    # Coarse integer scores make many ties; lesions score somewhat higher on average.
    heatmaps = [(rng.integers(0, 6, (40, 40)) + 2 * m * rng.integers(0, 2, (40, 40))).astype(np.float32) for m in masks]
    assert aupro(heatmaps, masks, fpr_limit=fpr_limit) == pytest.approx(
        _direct_aupro(heatmaps, masks, fpr_limit), abs=1e-12
    )


def test_never_above_one_even_with_rounding_and_huge_images():
    rng = np.random.default_rng(3)
    for trial in range(20):
        mask = rng.random((64, 64)) < 0.05 + 0.2 * rng.random()
        heatmap = mask + rng.normal(0, 0.01 + trial * 0.05, mask.shape)
        value = aupro([heatmap.astype(np.float32)], [mask])
        assert 0.0 <= value <= 1.0
    # A curve whose last point rounds to a hair above 1 and a limit past the end still stay within [0, 1].
    curve = ProCurve(np.array([0.0, 0.0, 1.0 + 1e-12]), np.array([0.0, 1.0 + 1e-12, 1.0 + 1e-12]),
                     np.array([np.inf, 1.0, 0.0]), 1, 10)
    assert area_under_pro(curve, 0.3) == 1.0


def test_region_restriction_and_stride():
    mask = _two_regions()
    heatmap = np.where(mask, 0.5, 0.0)
    heatmap[:, 36:] = 0.9  # bright background strip outside the tissue
    tissue = np.zeros(mask.shape, dtype=bool)
    tissue[:, :36] = True
    whole = aupro([heatmap], [mask])
    inside = aupro([heatmap], [mask], regions=[tissue])
    assert inside == 1.0
    # The strip holds 4 * 40 of 1528 negatives (FPR 0.105) above the lesions: PRO is 0 until then, then 1.
    assert whole == pytest.approx((0.3 - 160 / 1528) / 0.3, abs=1e-12)

    accumulator = ProAccumulator(stride=2)
    accumulator.add(heatmap, mask, tissue)
    assert accumulator.n_regions == 2 and accumulator.n_negative == int((~mask[::2, ::2] & tissue[::2, ::2]).sum())
    assert accumulator.aupro() == 1.0


def test_undefined_without_regions_or_negatives_and_bad_input():
    empty = np.zeros((8, 8), dtype=bool)
    assert np.isnan(aupro([np.zeros((8, 8))], [empty]))
    assert np.isnan(aupro([np.ones((8, 8))], [~empty]))
    assert pro_curve([np.zeros((8, 8))], [empty]).n_regions == 0
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro([np.zeros((8, 8))], [empty], fpr_limit=0.0)
    with pytest.raises(ValueError, match="NaN"):
        aupro([np.full((8, 8), np.nan)], [empty])
    with pytest.raises(ValueError, match="shape"):
        aupro([np.zeros((8, 8))], [np.zeros((8, 9), dtype=bool)])
