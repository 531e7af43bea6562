"""MOOD sample and pixel AP as the evaluator reads predictions: float16, clipping, missing or misshaped outputs,
fixed batches and the 0-for-non-finite rule."""

import nibabel
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from picard_ad.metrics.mood import (
    mood_batch_aps,
    mood_batches,
    mood_pixel_ap,
    mood_sample_ap,
    read_pixel_prediction,
    read_sample_prediction,
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


def as_read(scores):
    """What MOOD's evaluator scores: float16, clipped to [0, 1]."""
    return np.clip(np.asarray(scores).astype(np.float16), 0, 1)


def test_pixel_ap_is_the_mean_of_batch_aps_over_clamped_concatenated_voxels():
    scores, labels = _cases(45)
    expected = []
    for batch in mood_batches(45, seed=0):
        voxel_labels = np.concatenate([labels[case].ravel() for case in batch])
        voxel_scores = np.concatenate([as_read(scores[case]).ravel() for case in batch])
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
        average_precision_score(first_batch_labels, as_read(first_batch_scores)), abs=1e-12
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


def test_scores_are_read_as_float16_and_clipped_to_one():
    labels = [np.array([1, 0], dtype=bool)]
    assert mood_pixel_ap([np.array([0.90001, 0.9])], labels) == 0.5  # 1e-5 apart: one float16 value, a tie
    assert mood_pixel_ap([np.array([0.90001, 0.9], dtype=np.float16)], labels) == 0.5
    assert mood_pixel_ap([np.array([0.9005, 0.9])], labels) == 1.0  # a float16 step (4.9e-4) apart: ranked
    assert mood_pixel_ap([np.array([1.7, 1.2])], labels) == 0.5  # both clip to 1
    assert mood_pixel_ap([np.array([1e6, -1e6])], labels) == 1.0  # beyond float16's range: clipped to 1 and 0


def test_misshaped_scores_count_as_all_zeros():
    labels = [np.array([[1, 0, 0, 0], [0, 0, 0, 1]], dtype=bool), np.array([[0, 0, 1, 0]], dtype=bool)]
    scores = [np.full((2, 3), 0.9), np.array([[0.1, 0.2, 0.8, 0.3]])]
    with pytest.warns(UserWarning, match=r"case 0: prediction shape \(2, 3\) does not match the label shape"):
        misshaped = mood_pixel_ap(scores, labels, seed=0)
    # Case 0 all zeros: the lesion of case 1 ranks first (precision 1), then 9 voxels tie at 0 holding 2 lesions.
    assert misshaped == pytest.approx(1 / 3 * 1 + 2 / 3 * 3 / 12)
    assert misshaped == pytest.approx(mood_pixel_ap([None, scores[1]], labels))


def test_nan_scores_and_mismatched_lists_are_errors():
    scores, labels = _cases(3)
    scores[1][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="case 1: scores contain 1 NaN"):
        mood_pixel_ap(scores, labels)
    with pytest.raises(ValueError, match="3 score maps but 2 label maps"):
        mood_pixel_ap(scores, labels[:2])
    with pytest.raises(ValueError, match="1 NaN"):
        mood_sample_ap([0.2, float("nan")], [0, 1])


def test_prediction_files_are_read_as_the_evaluator_reads_them(tmp_path):
    label = np.zeros((2, 2, 2), dtype=bool)
    label[0, 0, 0] = label[1, 1, 1] = True
    scores = np.full(label.shape, 0.2, dtype=np.float32)
    scores[0, 0, 0], scores[1, 1, 1], scores[0, 1, 0] = 0.90001, 1.7, 0.9
    nibabel.save(nibabel.Nifti1Image(scores, np.eye(4)), tmp_path / "case.nii.gz")
    read = read_pixel_prediction(tmp_path / "case.nii.gz", label.shape)
    assert read.dtype == np.float16 and read[1, 1, 1] == 1.0 and read[0, 0, 0] == read[0, 1, 0] == np.float16(0.9)
    # Lesions at 1 (alone) and 0.9 (tied with a normal voxel): precision 1 at the first, 2/3 at the second.
    assert mood_pixel_ap([read], [label]) == pytest.approx((1 + 2 / 3) / 2)

    nibabel.save(nibabel.Nifti1Image(scores[:, :, :1], np.eye(4)), tmp_path / "misshaped.nii.gz")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8bnot a nifti")
    with pytest.warns(UserWarning):
        unusable = [read_pixel_prediction(tmp_path / name, label.shape) for name in ("misshaped.nii.gz",
                                                                                     "broken.nii.gz")]  # fmt: skip
    for zeros in [*unusable, read_pixel_prediction(tmp_path / "missing.nii.gz", label.shape)]:
        np.testing.assert_array_equal(zeros, np.zeros(label.shape))
        assert mood_pixel_ap([zeros], [label]) == 0.25  # all tied: the share of lesion voxels

    for text, expected in (("0.42\n", 0.42), ("1.7\n", 1.0), ("-3\n", 0.0), ("not a score\n", 0.0)):
        (tmp_path / "case.nii.gz.txt").write_text(text)
        assert read_sample_prediction(tmp_path / "case.nii.gz.txt") == expected
    assert read_sample_prediction(tmp_path / "missing.nii.gz.txt") == 0.0


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
