"""MOOD-style sample and pixel AP: fixed batches, clamping, missing outputs and the 0-for-non-finite rule."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from picard_ad.metrics.mood import (
    mood_batch_aps,
    mood_batches,
    mood_pixel_ap,
    mood_sample_ap,
)


def _cases(n_cases: int, seed: int = 0):
    """Small 4x4x4 volumes: a random cube of anomalous voxels, scores noisy and higher inside."""
    rng = np.random.default_rng(seed)
    labels, scores = [], []
    for _ in range(n_cases):
        label = np.zeros((4, 4, 4), dtype=bool)
        corner = rng.integers(0, 3, 3)
        label[corner[0] : corner[0] + 2, corner[1] : corner[1] + 2, corner[2] : corner[2] + 2] = True
        labels.append(label)
        scores.append(rng.uniform(-0.2, 0.8, label.shape) + 0.4 * label)
    return scores, labels


def test_batches_partition_the_cases_deterministically():
    batches = mood_batches(45, seed=3)
    assert [len(batch) for batch in batches] == [20, 20, 5]
    assert sorted(case for batch in batches for case in batch) == list(range(45))
    assert mood_batches(45, seed=3) == batches
    assert mood_batches(45, seed=4) != batches
    assert batches[0] != tuple(range(20))  # shuffled, not in case order
    assert mood_batches(0) == []
    with pytest.raises(ValueError):
        mood_batches(10, batch_size=0)


def test_pixel_ap_is_the_mean_of_batch_aps_over_clamped_concatenated_voxels():
    scores, labels = _cases(45)
    expected = []
    for batch in mood_batches(45, seed=0):
        voxel_labels = np.concatenate([labels[case].ravel() for case in batch])
        voxel_scores = np.concatenate([np.clip(scores[case], 0, 1).ravel() for case in batch])
        expected.append(average_precision_score(voxel_labels, voxel_scores))
    assert mood_batch_aps(scores, labels) == pytest.approx(expected, abs=1e-12)
    assert mood_pixel_ap(scores, labels) == pytest.approx(np.mean(expected), abs=1e-12)


def test_same_batches_for_every_method():
    scores, labels = _cases(30, seed=1)
    other_method = [np.clip(score[::-1], 0, 1) for score in scores]
    batches = mood_batches(30)
    first_batch_labels = np.concatenate([labels[case].ravel() for case in batches[0]])
    first_batch_scores = np.concatenate([other_method[case].ravel() for case in batches[0]])
    assert mood_batch_aps(other_method, labels)[0] == pytest.approx(
        average_precision_score(first_batch_labels, first_batch_scores), abs=1e-12
    )


def test_batch_without_anomalous_voxels_counts_as_zero():
    scores, labels = _cases(40, seed=2)
    second_batch = mood_batches(40)[1]
    for case in second_batch:
        labels[case] = np.zeros_like(labels[case])
    batch_aps = mood_batch_aps(scores, labels)
    assert batch_aps[1] == 0.0
    assert batch_aps[0] > 0.3
    assert mood_pixel_ap(scores, labels) == pytest.approx(batch_aps[0] / 2)


def test_scores_are_clamped_and_missing_outputs_count_as_zero():
    labels = [np.array([1, 0, 0], dtype=bool), np.array([0, 1, 0], dtype=bool)]
    # Unclamped, the lesions (5.0 and 3.0) would rank above the 2.0 normal voxel; clamped, all three tie at 1.
    scores = [np.array([5.0, 2.0, -1.0]), np.array([0.5, 3.0, -4.0])]
    voxel_labels = np.concatenate(labels)
    clamped = np.clip(np.concatenate(scores), 0, 1)
    assert mood_pixel_ap(scores, labels) == pytest.approx(average_precision_score(voxel_labels, clamped))
    assert mood_pixel_ap(scores, labels) < average_precision_score(voxel_labels, np.concatenate(scores))
    missing = mood_pixel_ap([None, scores[1]], labels)
    zeros_filled = np.concatenate([np.zeros(3), np.clip(scores[1], 0, 1)])
    assert missing == pytest.approx(average_precision_score(voxel_labels, zeros_filled))


def test_pixel_errors_name_the_case():
    scores, labels = _cases(3)
    scores[2] = scores[2][:2]
    with pytest.raises(ValueError, match="case 2: score shape"):
        mood_pixel_ap(scores, labels)
    scores, labels = _cases(3)
    scores[1][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="case 1: scores contain 1 NaN"):
        mood_pixel_ap(scores, labels)
    with pytest.raises(ValueError, match="3 score maps but 2 label maps"):
        mood_pixel_ap(scores, labels[:2])


def test_sample_ap():
    labels = np.array([0, 0, 1, 1])
    assert mood_sample_ap([0.1, 0.4, 0.35, 0.8], labels) == pytest.approx(5 / 6)
    # 1.7 and 1.2 clamp to a tie at 1; the missing output (None) scores 0.
    assert mood_sample_ap([1.7, None, 1.2, 0.5], labels) == pytest.approx(
        average_precision_score(labels, [1.0, 0.0, 1.0, 0.5])
    )
    assert mood_sample_ap([0.2, 0.3], [0, 0]) == 0.0
    with pytest.raises(ValueError, match="3 scores"):
        mood_sample_ap([0.1, 0.2, 0.3], labels)
