"""Dice, threshold calibration on a separate split, and the optimistic best-Dice bound."""

import json
from collections.abc import Sequence

import numpy as np
import pytest

from picard_ad.metrics.segmentation import (
    best_dice,
    calibrate_threshold,
    dice,
    dice_at_threshold,
)


class RecordingSequence(Sequence):
    """A list that remembers which indices were read."""

    def __init__(self, items):
        self.items = list(items)
        self.read = set()

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        item = self.items[index]
        self.read.add(index)
        return item


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
    # Calibration lesions score 0.9 (best threshold: above the background, at most 0.9); test lesions score 0.3,
    # inside the background range, so the test images' own best threshold is lower.
    calibration = [_image(0.9, seed) for seed in range(4)]
    test = [_image(0.3, 100 + seed) for seed in range(3)]
    test_heatmaps = RecordingSequence(h for h, _ in test)
    test_masks = RecordingSequence(m for _, m in test)
    candidates = np.linspace(0.0, 1.0, 21)

    calibrated = calibrate_threshold(
        [h for h, _ in calibration], [m for _, m in calibration], ["c0", "c1", "c2", "c3"], candidates=candidates
    )
    assert not test_heatmaps.read and not test_masks.read
    assert calibrated.threshold == pytest.approx(0.5)  # lowest candidate that keeps all background out
    assert calibrated.mean_dice == 1.0
    assert calibrated.image_names == ("c0", "c1", "c2", "c3")

    evaluation = dice_at_threshold(calibrated, test_heatmaps, test_masks, ["t0", "t1", "t2"])
    assert test_heatmaps.read == {0, 1, 2}
    assert evaluation.threshold == calibrated.threshold
    assert evaluation.image_dice == tuple(dice(h >= 0.5, m) for h, m in test)
    assert evaluation.mean_dice == 0.0  # test lesions (0.3) fall below the calibrated threshold

    upper_bound = best_dice([h for h, _ in test], [m for _, m in test], candidates=candidates)
    assert upper_bound.threshold < calibrated.threshold
    assert upper_bound.mean_dice > evaluation.mean_dice


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
