"""Exact ranking metrics: equality with scikit-learn, hand-computed cases, undefined cases and input errors."""

import warnings

import numpy as np
import pytest
from sklearn import metrics as sk

from picard_ad.metrics.ranking import (
    average_precision,
    precision_recall_curve,
    roc_auc,
    roc_curve,
    threshold_counts,
)

TOLERANCE = 1e-9


def _random_case(seed: int):
    """Labels and heavily tied scores of random size, class balance and dtype."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([2, 3, 7, 50, 1000, 20_000]))
    labels = rng.random(n) < rng.uniform(0.01, 0.99)
    labels[:2] = True, False  # both classes present, so sklearn is defined
    n_levels = int(rng.choice([1, 2, 5, 30, 10_000]))
    dtype = rng.choice([np.float32, np.float64])
    scores = (rng.integers(0, n_levels, n) / n_levels + rng.normal(0, 0.1) * labels).astype(dtype)
    return labels, scores


def _sklearn(function, labels, scores, weights=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(labels, scores, sample_weight=weights)


@pytest.mark.parametrize("seed", range(80))
def test_equals_sklearn_on_tied_random_inputs(seed):
    labels, scores = _random_case(seed)
    assert abs(roc_auc(labels, scores) - _sklearn(sk.roc_auc_score, labels, scores)) < TOLERANCE
    assert abs(average_precision(labels, scores) - _sklearn(sk.average_precision_score, labels, scores)) < TOLERANCE


@pytest.mark.parametrize("seed", range(20))
def test_weighted_equals_sklearn_including_zero_weights(seed):
    labels, scores = _random_case(1000 + seed)
    rng = np.random.default_rng(seed)
    weights = rng.random(labels.size) * 3
    weights[rng.random(labels.size) < 0.2] = 0.0
    weights[:2] = 1.0  # keep one weighted sample of each class
    expected_auc = _sklearn(sk.roc_auc_score, labels, scores, weights)
    expected_ap = _sklearn(sk.average_precision_score, labels, scores, weights)
    assert abs(roc_auc(labels, scores, weights) - expected_auc) < TOLERANCE
    assert abs(average_precision(labels, scores, weights) - expected_ap) < TOLERANCE


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_sklearn_on_half_a_million_pixels(dtype):
    rng = np.random.default_rng(7)
    labels = rng.random(500_000) < 0.02
    scores = (np.round(rng.random(labels.size), 3) + 0.05 * labels).astype(dtype)
    assert abs(roc_auc(labels, scores) - sk.roc_auc_score(labels, scores)) < TOLERANCE
    assert abs(average_precision(labels, scores) - sk.average_precision_score(labels, scores)) < TOLERANCE


def test_unit_weights_match_unweighted_path():
    labels, scores = _random_case(3)
    ones = np.ones(labels.size)
    assert roc_auc(labels, scores, ones) == pytest.approx(roc_auc(labels, scores), abs=1e-12)
    assert average_precision(labels, scores, ones) == pytest.approx(average_precision(labels, scores), abs=1e-12)


def test_float64_differences_below_float32_resolution_are_kept():
    # Narrowing these scores to float32 would tie every pixel and give AUROC 0.5 instead of 1.
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.5, 0.5, 0.5 + 1e-12, 0.5 + 2e-12])
    assert np.float32(scores[2]) == np.float32(scores[0])
    assert roc_auc(labels, scores) == 1.0
    assert average_precision(labels, scores) == 1.0


def test_hand_computed_example_without_ties():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(labels, scores) == pytest.approx(0.75, abs=1e-15)
    # thresholds 0.8 (P=1, R=1/2), 0.4 (P=1/2, R=1/2), 0.35 (P=2/3, R=1): AP = 1/2 + 1/2 * 2/3
    assert average_precision(labels, scores) == pytest.approx(5 / 6, abs=1e-15)


def test_hand_computed_example_with_ties():
    labels = np.array([0, 1, 0, 1])
    scores = np.array([0.5, 0.5, 0.2, 0.9])
    # pairs (pos, neg): (.9,.5)=1 (.9,.2)=1 (.5,.5)=1/2 (.5,.2)=1
    assert roc_auc(labels, scores) == pytest.approx(3.5 / 4, abs=1e-15)
    # threshold 0.9: P=1, R=1/2; threshold 0.5 (one positive, one negative tied): P=2/3, R=1
    assert average_precision(labels, scores) == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)


def test_matches_brute_force_pair_counting():
    rng = np.random.default_rng(11)
    labels = rng.random(150) < 0.3
    scores = rng.integers(0, 6, 150).astype(np.float32)
    positives, negatives = scores[labels][:, None], scores[~labels][None, :]
    pair_score = (positives > negatives) + 0.5 * (positives == negatives)
    assert roc_auc(labels, scores) == pytest.approx(pair_score.mean(), abs=1e-15)


def test_perfect_inverted_and_constant_scores():
    labels = np.array([0, 0, 0, 1, 1])
    ramp = np.arange(5.0)
    assert roc_auc(labels, ramp) == 1.0
    assert average_precision(labels, ramp) == 1.0
    assert roc_auc(labels, -ramp) == 0.0
    assert roc_auc(labels, np.full(5, 0.3)) == 0.5
    assert average_precision(labels, np.full(5, 0.3)) == pytest.approx(2 / 5)


def test_undefined_cases_return_nan_without_raising():
    scores = np.array([0.1, 0.2, 0.3])
    assert np.isnan(roc_auc([0, 0, 0], scores))
    assert np.isnan(average_precision([0, 0, 0], scores))
    assert np.isnan(roc_auc([1, 1, 1], scores))
    assert average_precision([1, 1, 1], scores) == 1.0  # defined: every threshold has precision 1
    assert np.isnan(roc_auc([], []))
    assert np.isnan(average_precision([], []))
    assert np.isnan(roc_auc([0, 1, 1], scores, weights=[1.0, 0.0, 0.0]))


def test_any_shape_and_label_or_score_dtype():
    rng = np.random.default_rng(5)
    labels = rng.random((16, 12)) < 0.2
    scores = rng.integers(0, 4, (16, 12))
    expected = sk.roc_auc_score(labels.ravel(), scores.ravel())
    assert roc_auc(labels, scores) == pytest.approx(expected, abs=TOLERANCE)
    assert roc_auc(labels.astype(np.uint8), scores.astype(np.float16)) == pytest.approx(expected, abs=TOLERANCE)
    assert roc_auc(labels.astype(np.float32), scores.astype(np.int16)) == pytest.approx(expected, abs=TOLERANCE)
    bool_scores = scores > 1
    assert roc_auc(labels, bool_scores) == pytest.approx(sk.roc_auc_score(labels.ravel(), bool_scores.ravel()))


def test_nan_and_inf_scores_raise_a_clear_error():
    with pytest.raises(ValueError, match="1 NaN"):
        roc_auc([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="1 infinite"):
        average_precision([0, 1, 1], [0.1, np.inf, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1, 1], [0.1, np.nan, 0.3], weights=[1, 1, 1])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        roc_auc(np.zeros((4, 4)), np.zeros(16))
    with pytest.raises(ValueError, match="only 0 and 1"):
        roc_auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="non-negative"):
        roc_auc([0, 1], [0.1, 0.2], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="weights shape"):
        roc_auc([0, 1], [0.1, 0.2], weights=[1.0])


def test_threshold_counts_are_cumulative_per_distinct_score():
    counts = threshold_counts([1, 0, 1, 0, 0], [0.9, 0.9, 0.5, 0.2, 0.5])
    np.testing.assert_array_equal(counts.thresholds, [0.9, 0.5, 0.2])
    np.testing.assert_array_equal(counts.true_positives, [1, 2, 2])
    np.testing.assert_array_equal(counts.false_positives, [1, 2, 3])
    assert (counts.n_positive, counts.n_negative) == (2, 3)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("drop_intermediate", [True, False])
def test_roc_curve_equals_sklearn(seed, drop_intermediate):
    labels, scores = _random_case(500 + seed)
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=drop_intermediate)
    expected = _sklearn_curve(sk.roc_curve, labels, scores, drop_intermediate=drop_intermediate)
    for got, want in zip((fpr, tpr, thresholds), expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_precision_recall_curve_equals_sklearn(seed):
    labels, scores = _random_case(700 + seed)
    curve = precision_recall_curve(labels, scores)
    expected = _sklearn_curve(sk.precision_recall_curve, labels, scores)
    for got, want in zip(curve, expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def _sklearn_curve(function, labels, scores, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(labels, scores, **options)


def test_curves_are_nan_where_a_class_is_missing():
    curve = roc_curve([0, 0, 0], [0.1, 0.2, 0.3])
    assert np.all(np.isnan(curve.tpr)) and not np.any(np.isnan(curve.fpr))
    assert np.all(np.isnan(precision_recall_curve([0, 0], [0.1, 0.2]).recall[:-1]))
