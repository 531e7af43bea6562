"""Lesion-level sensitivity: peaks, the DBTex hit rule, false positives per image and size bins."""

import math

import numpy as np
import pytest

from picard_ad.io.annotations import Box
from picard_ad.metrics.lesions import (
    Peak,
    find_peaks,
    froc_curve,
    hit_radius,
    lesion_sensitivity,
    lesions_from_mask,
    match_peaks,
)

# A 40x40 box centred on (row 119.5, column 219.5): diagonal 56.6 px, so its hit radius is the 100 px floor.
SMALL = Box(x=200, y=100, width=40, height=40)
# A 300x400 box: half diagonal 250 px, larger than the floor.
LARGE = Box(x=1000, y=1000, width=400, height=300)


def test_hit_radius_is_half_diagonal_with_a_100_px_floor():
    assert hit_radius(SMALL) == 100.0
    assert hit_radius(LARGE) == pytest.approx(250.0)
    assert hit_radius(SMALL, min_distance=10.0) == pytest.approx(math.hypot(40, 40) / 2)


def test_peak_within_100_px_hits_and_far_peak_is_a_false_positive():
    near = Peak(row=119 + 99, column=219, value=0.9)  # 99.5 px below the centre
    far = Peak(row=119 + 101, column=219, value=0.8)  # 101.5 px
    result = match_peaks([near, far], [SMALL])
    assert result.lesion_scores == (0.9,)
    assert result.false_positive_scores == (0.8,)
    missed = match_peaks([far], [SMALL])
    assert missed.lesion_scores == (-math.inf,) and missed.false_positive_scores == (0.8,)
    # The large box is hit 240 px from its centre (inside 250) but not 260 px away.
    centre_row, centre_col = LARGE.center
    inside = Peak(round(centre_row), round(centre_col + 240), 0.5)
    outside = Peak(round(centre_row), round(centre_col + 260), 0.4)
    assert match_peaks([inside, outside], [LARGE]).false_positive_scores == (0.4,)


def test_lesion_hit_by_two_peaks_counts_once_and_neither_peak_is_a_false_positive():
    peaks = [Peak(120, 220, 0.9), Peak(150, 250, 0.7), Peak(900, 900, 0.3)]
    image = match_peaks(peaks, [SMALL], name="a")
    assert image.lesion_scores == (0.9,)
    assert image.false_positive_scores == (0.3,)
    curve = froc_curve([image])
    assert curve.n_lesions == 1
    assert curve.sensitivity.max() == 1.0  # not 2


def test_false_positives_are_counted_per_image_including_normal_images():
    abnormal = match_peaks([Peak(120, 220, 0.9), Peak(600, 600, 0.5)], [SMALL], name="abnormal")
    normal = match_peaks([Peak(300, 300, 0.8), Peak(700, 100, 0.6), Peak(50, 50, 0.2)], [], name="normal")
    curve = froc_curve([abnormal, normal])
    assert curve.n_images == 2 and curve.n_lesions == 1
    np.testing.assert_array_equal(curve.thresholds, [np.inf, 0.9, 0.8, 0.6, 0.5, 0.2])
    np.testing.assert_array_equal(curve.mean_fp_per_image, [0, 0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_array_equal(curve.sensitivity, [0, 1, 1, 1, 1, 1])
    result = lesion_sensitivity([abnormal, normal], fp_rates=(0.0, 0.5, 1.0, 2.0))
    assert result.sensitivity == (1.0, 1.0, 1.0, 1.0)
    assert result.thresholds == (0.9, 0.8, 0.6, 0.2)


def test_sensitivity_at_fp_rates_and_size_bins():
    # Three lesions: a small one found by the strongest peak, a large one found after two false positives,
    # and a small one never found. Two images, so each false positive is 0.5 per image.
    first = match_peaks(
        [Peak(120, 220, 0.95), Peak(10, 10, 0.9), Peak(1150, 1200, 0.6)],
        [SMALL, LARGE],
        name="first",
    )
    second = match_peaks([Peak(500, 500, 0.8)], [Box(x=10, y=600, width=20, height=20)], name="second")
    result = lesion_sensitivity([first, second], fp_rates=(0.5, 1.0, 2.0, 4.0), size_edges=(100.0,))
    # Thresholds: 0.95 (0 FP, 1/3), 0.9 (0.5 FP, 1/3), 0.8 (1 FP, 1/3), 0.6 (1 FP, 2/3).
    assert result.sensitivity == pytest.approx((1 / 3, 2 / 3, 2 / 3, 2 / 3))
    assert result.thresholds == (0.9, 0.6, 0.6, 0.6)
    small, large = result.size_bins
    assert (small.low, small.high, small.n_lesions) == (0.0, 100.0, 2)
    assert small.sensitivity == (0.5, 0.5, 0.5, 0.5)
    assert (large.n_lesions, large.label) == (1, ">= 100")
    assert large.sensitivity == (0.0, 1.0, 1.0, 1.0)
    record = result.to_dict()
    assert record["fp_per_image"] == [0.5, 1.0, 2.0, 4.0] and record["by_size"][1]["n_lesions"] == 1

    by_area = lesion_sensitivity(
        [match_peaks([Peak(120, 220, 1.0)], [SMALL], size_measure="area")], fp_rates=(1.0,), size_edges=(1600.0,)
    )
    assert [item.n_lesions for item in by_area.size_bins] == [0, 1]  # 40 x 40 = 1600 px^2 falls in [1600, inf)
    assert math.isnan(by_area.size_bins[0].sensitivity[0])


def test_no_lesions_gives_undefined_sensitivity():
    result = lesion_sensitivity([match_peaks([Peak(1, 1, 0.5)], [])], fp_rates=(1.0,))
    assert result.n_lesions == 0 and math.isnan(result.sensitivity[0])
    with pytest.raises(ValueError, match="ascending"):
        lesion_sensitivity([match_peaks([], [SMALL])], size_edges=(200.0, 100.0))


def test_find_peaks_suppresses_neighbours_and_ranks_by_value():
    heatmap = np.zeros((200, 200), dtype=np.float32)
    heatmap[50, 50] = 5.0
    heatmap[55, 58] = 4.0  # within 10 px of the stronger peak: suppressed
    heatmap[150, 150] = 3.0
    heatmap[100:103, 20:23] = 2.0  # a 3x3 plateau: one peak at its centre
    heatmap[20, 180] = 1.0
    heatmap[20, 185] = 1.0  # equal maximum 5 px away: one of the two
    peaks = find_peaks(heatmap, radius=10)
    positives = [(p.row, p.column, p.value) for p in peaks if p.value > 0]
    assert positives == [(50, 50, 5.0), (150, 150, 3.0), (101, 21, 2.0), (20, 180, 1.0)]
    assert [p.value for p in peaks] == sorted((p.value for p in peaks), reverse=True)
    # With a radius of 3 the weaker neighbour and both equal maxima survive.
    small_radius = {(p.row, p.column) for p in find_peaks(heatmap, radius=3) if p.value > 0}
    assert {(55, 58), (20, 180), (20, 185)} <= small_radius
    tissue = np.zeros(heatmap.shape, dtype=bool)
    tissue[100:, :] = True
    assert [(p.row, p.column) for p in find_peaks(heatmap, 10, tissue) if p.value > 0] == [(150, 150), (101, 21)]
    with pytest.raises(ValueError, match="radius"):
        find_peaks(heatmap, radius=0.5)


def test_peaks_of_a_blob_heatmap_detect_planted_lesions():
    rows, cols = np.mgrid[0:400, 0:400]
    heatmap = np.exp(-((rows - 100) ** 2 + (cols - 300) ** 2) / 200.0) + 0.5 * np.exp(
        -((rows - 300) ** 2 + (cols - 80) ** 2) / 200.0
    )
    peaks = find_peaks(heatmap, radius=20)
    assert [(p.row, p.column) for p in peaks] == [(100, 300), (300, 80)]
    lesions = [Box(x=290, y=90, width=21, height=21), Box(x=370, y=370, width=10, height=10)]
    image = match_peaks(peaks, lesions)
    assert image.lesion_scores == (1.0, -math.inf)
    assert image.false_positive_scores == (0.5,)


def test_lesions_from_mask_are_bounding_boxes_of_components():
    mask = np.zeros((50, 60), dtype=bool)
    mask[5:10, 7:12] = True
    mask[30:41, 40:43] = True
    mask[41, 43] = True  # diagonal neighbour: same component
    assert lesions_from_mask(mask) == [Box(x=7, y=5, width=5, height=5), Box(x=40, y=30, width=4, height=12)]
    assert lesions_from_mask(np.zeros((5, 5), dtype=bool)) == []
