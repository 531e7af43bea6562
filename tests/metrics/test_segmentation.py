"""Dice, threshold calibration on a separate split, and the optimistic best-Dice bound."""

import json

import numpy as np
import pytest

from picard_ad.metrics.segmentation import (
    best_dice,
    calibrate_threshold,
    dice,
    dice_at_fifth_of_test_threshold,
    dice_at_threshold,
)


def _image(lesion_score: float, seed: int):
    """16x16 heatmap: background uniform in [0, 0.5), a 4x4 lesion at lesion_score."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((16, 16), dtype=bool)
    mask[6:10, 3:7] = True
    heatmap = rng.uniform(0.0, 0.5, mask.shape)
    heatmap[mask] = lesion_score
    return heatmap, mask


def test_dice_hand_computed():
    pred = np.array([1, 1, 1, 0, 0], dtype=bool)
    truth = np.array([0, 0, 1, 1, 0], dtype=bool)
    assert dice(pred, truth) == pytest.approx(2 * 1 / (3 + 2))
    assert dice(truth, truth) == 1.0
    assert dice(np.zeros(5), np.zeros(5)) == 1.0
    assert dice(np.zeros(5), truth) == 0.0
    with pytest.raises(ValueError, match="shape"):
        dice(np.zeros((2, 3)), np.zeros((3, 2)))


def test_dice_per_candidate_equals_thresholding_by_hand():
    images = [_image(0.3, seed) for seed in range(3)]
    heatmaps, masks = [h for h, _ in images], [m for _, m in images]
    result = best_dice(heatmaps, masks, n_candidates=25)
    assert result.optimistic
    for threshold, mean in zip(result.candidates, result.mean_dice_per_candidate):
        expected = np.mean([dice(h >= threshold, m) for h, m in images])
        assert mean == pytest.approx(expected, abs=1e-12)
    assert result.mean_dice == max(result.mean_dice_per_candidate)


def test_calibrated_threshold_comes_only_from_the_calibration_split():
    # Calibration lesions score 0.9 over a background below 0.5, so the calibrated threshold is 0.5 (the lowest
    # candidate that keeps all background out). The test heatmaps stay fixed (a 4x4 lesion at 0.62 with a 2x2
    # core at 0.9) and are scored against three sets of test masks whose own best thresholds are 0.5 (the
    # lesion), 0.65 (the core only) and 0.3 (the lesion plus the background at or above 0.3): a threshold tuned
    # on the test masks would move with them, up and down; the calibrated one must not.
    candidates = np.linspace(0.0, 1.0, 21)
    calibration = [_image(0.9, seed) for seed in range(4)]
    calibration_heatmaps, calibration_names = [h for h, _ in calibration], ["c0", "c1", "c2", "c3"]
    test_heatmaps, lesion_masks = [], []
    for seed in range(3):
        heatmap, mask = _image(0.62, 100 + seed)
        heatmap[7:9, 4:6] = 0.9
        test_heatmaps.append(heatmap)
        lesion_masks.append(mask)
    core_masks = [heatmap >= 0.9 for heatmap in test_heatmaps]
    wide_masks = [heatmap >= candidates[6] for heatmap in test_heatmaps]  # candidates[6] == 0.3 + 4e-17
    test_names = ["t0", "t1", "t2"]

    calibrated = calibrate_threshold(
        calibration_heatmaps, [m for _, m in calibration], calibration_names, candidates=candidates
    )
    assert calibrated.threshold == pytest.approx(0.5)
    assert calibrated.mean_dice == 1.0
    assert calibrated.image_names == ("c0", "c1", "c2", "c3")

    # The test masks really would move a threshold tuned on them: 0.5, 0.65, 0.3, each with Dice 1.
    tuned_on_test = [best_dice(test_heatmaps, masks, candidates=candidates) for masks in
                     (lesion_masks, core_masks, wide_masks)]
    assert [result.threshold for result in tuned_on_test] == pytest.approx([0.5, 0.65, 0.3])
    assert [result.mean_dice for result in tuned_on_test] == [1.0, 1.0, 1.0]

    on_lesions, on_cores, on_wide = (
        dice_at_threshold(calibrated, test_heatmaps, masks, test_names)
        for masks in (lesion_masks, core_masks, wide_masks)
    )
    # Only the test masks changed: the threshold stays at the calibrated 0.5 while the test Dice follows the masks.
    assert on_lesions.threshold == on_cores.threshold == on_wide.threshold == calibrated.threshold
    assert on_lesions.image_dice == (1.0, 1.0, 1.0)
    assert on_cores.image_dice == pytest.approx([2 * 4 / (4 + 16)] * 3)  # 16 pixels predicted, 4 in the core
    wide_sizes = [int(mask.sum()) for mask in wide_masks]
    assert wide_sizes == [124, 110, 110]
    assert on_wide.image_dice == pytest.approx([2 * 16 / (16 + size) for size in wide_sizes])  # 0.229, 0.254
    assert on_wide.mean_dice < on_cores.mean_dice < on_lesions.mean_dice
    assert tuned_on_test[2].mean_dice > on_wide.mean_dice  # the optimistic bound is above the honest result

    # Changing the calibration masks (to the lesion plus background at or above 0.3) does move the threshold.
    recalibrated = calibrate_threshold(
        calibration_heatmaps, [h >= candidates[6] for h in calibration_heatmaps], calibration_names,
        candidates=candidates,
    )
    assert recalibrated.threshold == pytest.approx(0.3)
    assert dice_at_threshold(recalibrated, test_heatmaps, wide_masks, test_names).image_dice == (1.0, 1.0, 1.0)


def test_test_split_sharing_an_image_with_calibration_is_refused():
    images = [_image(0.9, seed) for seed in range(3)]
    heatmaps, masks = [h for h, _ in images], [m for _, m in images]
    calibrated = calibrate_threshold(heatmaps[:2], masks[:2], ["a", "b"])
    with pytest.raises(ValueError, match="shares 1 images.*b"):
        dice_at_threshold(calibrated, heatmaps[1:], masks[1:], ["b", "c"])


def test_split_errors():
    heatmap, mask = _image(0.9, 0)
    with pytest.raises(ValueError, match="unique.*x"):
        calibrate_threshold([heatmap, heatmap], [mask, mask], ["x", "x"])
    with pytest.raises(ValueError, match="2 heatmaps, 1 masks"):
        calibrate_threshold([heatmap, heatmap], [mask], ["x", "y"])
    with pytest.raises(ValueError, match="no images"):
        calibrate_threshold([], [], [])
    with pytest.raises(ValueError, match="'x'.*shape"):
        calibrate_threshold([heatmap], [mask[:8]], ["x"])
    with pytest.raises(ValueError, match="finite"):
        calibrate_threshold([heatmap], [mask], ["x"], candidates=[np.nan])


def test_default_candidates_are_calibration_quantiles_and_json():
    images = [_image(0.9, seed) for seed in range(2)]
    result = calibrate_threshold([h for h, _ in images], [m for _, m in images], ["a", "b"], n_candidates=50)
    pooled = np.concatenate([h.ravel() for h, _ in images])
    assert result.candidates == tuple(np.unique(np.quantile(pooled, np.linspace(0, 1, 50))))
    assert result.candidates[0] == pooled.min() and result.candidates[-1] == pooled.max()
    assert result.mean_dice == 1.0
    json.dumps(result.to_dict(), allow_nan=False)


def _ranked_lesions(n: int):
    """n one-row images scoring 0.0, 0.1, ..., 0.9 where image i's lesion is its top i + 1 pixels: on image i alone
    the threshold (9 - i) / 10 segments the lesion exactly, and on image j it gives Dice 2 min(i, j) + 2 over
    i + j + 2."""
    heatmaps = [np.arange(10)[None] / 10 for _ in range(n)]
    masks = [np.arange(10)[None] >= 9 - i for i in range(n)]
    return heatmaps, masks, [f"image{i}" for i in range(n)]


def test_the_fifth_of_test_threshold_comes_from_a_seeded_fifth_and_dice_from_the_rest():
    heatmaps, masks, names = _ranked_lesions(5)
    candidates = np.arange(10) / 10
    chosen = set()
    for seed in range(12):
        fifth, rest = dice_at_fifth_of_test_threshold(heatmaps, masks, names, candidates=candidates, seed=seed)
        (picked,) = fifth.image_names  # round(5 / 5) = 1 image chooses the threshold
        k = names.index(picked)
        chosen.add(k)
        assert fifth.optimistic and fifth.threshold == pytest.approx((9 - k) / 10) and fifth.mean_dice == 1.0
        assert rest.image_names == tuple(name for name in names if name != picked)
        expected = [2 * (min(k, j) + 1) / (k + j + 2) for j in range(5) if j != k]
        assert rest.image_dice == pytest.approx(expected) and rest.mean_dice == pytest.approx(np.mean(expected))
        again, _ = dice_at_fifth_of_test_threshold(heatmaps, masks, names, candidates=candidates, seed=seed)
        assert again.image_names == fifth.image_names  # seeded
    assert len(chosen) >= 3  # the seed moves the choice
    # 10 images: 2 choose; 2 images: 1 chooses and 1 is scored; 1 image is refused.
    fifth, rest = dice_at_fifth_of_test_threshold(*_ranked_lesions(10), candidates=candidates)
    assert (len(fifth.image_names), len(rest.image_names)) == (2, 8)
    assert not set(fifth.image_names) & set(rest.image_names)
    fifth, rest = dice_at_fifth_of_test_threshold(*_ranked_lesions(2), candidates=candidates)
    assert (len(fifth.image_names), len(rest.image_names)) == (1, 1)
    with pytest.raises(ValueError, match="needs at least 2 images"):
        dice_at_fifth_of_test_threshold(*_ranked_lesions(1))
