"""Exact, tie-aware ranking metrics (ROC AUC, average precision) and their curves, sharing one sorted core.

Every function here agrees with scikit-learn's ``roc_auc_score``, ``average_precision_score``, ``roc_curve`` and
``precision_recall_curve`` (tied scores form one threshold; AP is the step-wise sum over distinct thresholds, not
interpolated), but returns NaN instead of raising or warning when a metric is undefined. Scores are sorted in
their own dtype: float32 heatmaps sort as float32, and float64 scores are never narrowed, because narrowing would
merge scores that differ below float32 resolution into false ties.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike


class ThresholdCounts(NamedTuple):
    """Cumulative counts at each distinct score, highest score first.

    thresholds: (U,) float64 distinct scores, descending.
    true_positives: (U,) positives scoring >= threshold; int64 counts, or float64 weight sums when weighted.
    false_positives: (U,) negatives scoring >= threshold; same dtype as true_positives.
    """

    thresholds: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray

    @property
    def n_positive(self) -> int | float:
        return self.true_positives[-1].item() if self.true_positives.size else 0

    @property
    def n_negative(self) -> int | float:
        return self.false_positives[-1].item() if self.false_positives.size else 0


class RocCurve(NamedTuple):
    """ROC curve as in scikit-learn: starts at (0, 0) with threshold +inf; fpr, tpr, thresholds are (K,) float64."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


class PrecisionRecallCurve(NamedTuple):
    """Precision-recall curve as in scikit-learn: precision, recall (K+1,) end at (1, 0); thresholds (K,) ascend."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


def binary_labels(labels: ArrayLike, what: str = "labels") -> np.ndarray:
    """Boolean copy (or view) of a label array holding only bool, 0 or 1 values; ValueError otherwise.

    labels: any shape, bool or numeric with values in {0, 1}. what: the name used in the error message.
    """
    array = np.asarray(labels)
    if array.dtype == bool:
        return array
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{what} must be bool or 0/1 numbers, got dtype {array.dtype}")
    if array.size and not np.all((array == 0) | (array == 1)):
        bad = np.unique(array[(array != 0) & (array != 1)])[:5]
        raise ValueError(f"{what} must hold only 0 and 1, found {bad.tolist()}")
    return array != 0


def _sortable_scores(scores: ArrayLike) -> np.ndarray:
    """Flattened scores in a dtype that sorts exactly: float16 and bool are widened, nothing is narrowed."""
    array = np.asarray(scores)
    if array.dtype == bool:
        return array.ravel().view(np.uint8)
    if array.dtype == np.float16:
        return array.ravel().astype(np.float32)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"scores must be real numbers, got dtype {array.dtype}")
    return array.ravel()


def _raise_if_not_finite(sorted_scores: np.ndarray) -> None:
    # After an ascending sort, -inf sits first and +inf/NaN last, so two lookups check the whole array.
    if sorted_scores.size and not (np.isfinite(sorted_scores[0]) and np.isfinite(sorted_scores[-1])):
        n_nan = int(np.isnan(sorted_scores).sum())
        n_inf = int(np.isinf(sorted_scores).sum())
        raise ValueError(f"scores must be finite, found {n_nan} NaN and {n_inf} infinite values")


def threshold_counts(labels: ArrayLike, scores: ArrayLike, weights: ArrayLike | None = None) -> ThresholdCounts:
    """Positives and negatives scoring at or above each distinct score: the core of every metric in this module.

    labels: any shape, bool or 0/1. scores: same shape, any real dtype, finite (NaN or inf raise ValueError).
    weights: optional same shape, non-negative finite sample weights; zero-weight samples are dropped.
    """
    label_array = np.asarray(labels)
    score_array = np.asarray(scores)
    if label_array.shape != score_array.shape:
        raise ValueError(f"labels shape {label_array.shape} does not match scores shape {score_array.shape}")
    is_positive = binary_labels(label_array).ravel()
    keys = _sortable_scores(score_array)
    if weights is None:
        return _unweighted_counts(is_positive, keys)
    weight_array = np.asarray(weights, dtype=np.float64)
    if weight_array.shape != score_array.shape:
        raise ValueError(f"weights shape {weight_array.shape} does not match scores shape {score_array.shape}")
    weight_array = weight_array.ravel()
    if not np.all(np.isfinite(weight_array)) or np.any(weight_array < 0):
        raise ValueError("weights must be finite and non-negative")
    kept = weight_array != 0
    return _weighted_counts(is_positive[kept], keys[kept], weight_array[kept])


def _distinct_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal values in an ascending array."""
    is_start = np.empty(sorted_keys.size, dtype=bool)
    is_start[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=is_start[1:])
    return np.flatnonzero(is_start)


def _empty_counts(dtype: type) -> ThresholdCounts:
    return ThresholdCounts(np.empty(0, np.float64), np.empty(0, dtype), np.empty(0, dtype))


def _unweighted_counts(is_positive: np.ndarray, keys: np.ndarray) -> ThresholdCounts:
    # Sorting values alone is several times faster than argsort; positives are sorted on their own and placed
    # on the distinct thresholds by binary search, so no permutation is ever needed.
    if keys.size == 0:
        return _empty_counts(np.int64)
    sorted_keys = np.sort(keys)
    _raise_if_not_finite(sorted_keys)
    starts = _distinct_starts(sorted_keys)
    distinct = sorted_keys[starts]
    positive_slot = np.searchsorted(distinct, np.sort(keys[is_positive]))
    positives_at = np.bincount(positive_slot, minlength=distinct.size)
    totals_at = np.diff(starts, append=keys.size)
    tps = np.cumsum(positives_at[::-1], dtype=np.int64)
    fps = np.cumsum(totals_at[::-1], dtype=np.int64) - tps
    return ThresholdCounts(distinct[::-1].astype(np.float64), tps, fps)


def _weighted_counts(is_positive: np.ndarray, keys: np.ndarray, weights: np.ndarray) -> ThresholdCounts:
    if keys.size == 0:
        return _empty_counts(np.float64)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    _raise_if_not_finite(sorted_keys)
    starts = _distinct_starts(sorted_keys)
    sorted_weights = weights[order]
    positives_at = np.add.reduceat(np.where(is_positive[order], sorted_weights, 0.0), starts)
    negatives_at = np.add.reduceat(np.where(is_positive[order], 0.0, sorted_weights), starts)
    # Two separate cumulative sums keep both curves exactly monotone despite rounding.
    tps = np.cumsum(positives_at[::-1])
    fps = np.cumsum(negatives_at[::-1])
    return ThresholdCounts(sorted_keys[starts][::-1].astype(np.float64), tps, fps)


def roc_auc_from_counts(counts: ThresholdCounts) -> float:
    """Area under the ROC curve (trapezoids, ties count half) from threshold counts; NaN without both classes."""
    n_positive, n_negative = counts.n_positive, counts.n_negative
    if n_positive <= 0 or n_negative <= 0:
        return float("nan")
    tps, fps = counts.true_positives, counts.false_positives
    new_fps = np.diff(fps, prepend=0)
    # Twice the area in count units; with integer counts this sum is exact (no overflow below ~4e9 samples).
    doubled_area = np.sum(new_fps * (2 * tps - np.diff(tps, prepend=0)))
    return float(doubled_area / (2 * n_positive * n_negative))


def average_precision_from_counts(counts: ThresholdCounts) -> float:
    """Step-wise average precision, sum over thresholds of (recall gain x precision); NaN without positives."""
    n_positive = counts.n_positive
    if n_positive <= 0:
        return float("nan")
    tps, fps = counts.true_positives, counts.false_positives
    new_tps = np.diff(tps, prepend=0)
    gains = new_tps > 0
    precision = tps[gains] / (tps[gains] + fps[gains])
    return float(np.sum(new_tps[gains] * precision) / n_positive)


def roc_auc(labels: ArrayLike, scores: ArrayLike, weights: ArrayLike | None = None) -> float:
    """ROC AUC equal to sklearn's ``roc_auc_score``; NaN when labels lack positives or negatives.

    labels: any shape, bool or 0/1. scores: same shape, finite reals (flattened). weights: optional, same shape.
    """
    return roc_auc_from_counts(threshold_counts(labels, scores, weights))


def average_precision(labels: ArrayLike, scores: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Average precision equal to sklearn's ``average_precision_score``; NaN when labels hold no positive.

    labels: any shape, bool or 0/1. scores: same shape, finite reals (flattened). weights: optional, same shape.
    """
    return average_precision_from_counts(threshold_counts(labels, scores, weights))


def _divide_or_nan(numerator: np.ndarray, denominator: float) -> np.ndarray:
    if denominator <= 0:
        return np.full(numerator.shape, np.nan)
    return numerator / denominator


def roc_curve(
    labels: ArrayLike, scores: ArrayLike, weights: ArrayLike | None = None, drop_intermediate: bool = True
) -> RocCurve:
    """ROC curve equal to sklearn's ``roc_curve``; fpr (tpr) is all NaN when there is no negative (positive).

    labels, scores, weights: as in ``roc_auc``. drop_intermediate: drop collinear points (area unchanged).
    """
    counts = threshold_counts(labels, scores, weights)
    thresholds, tps, fps = counts
    if drop_intermediate and thresholds.size > 2:
        corners = np.flatnonzero(np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True])
        thresholds, tps, fps = thresholds[corners], tps[corners], fps[corners]
    tps = np.r_[0, tps].astype(np.float64)
    fps = np.r_[0, fps].astype(np.float64)
    return RocCurve(
        fpr=_divide_or_nan(fps, counts.n_negative),
        tpr=_divide_or_nan(tps, counts.n_positive),
        thresholds=np.r_[np.inf, thresholds],
    )


def precision_recall_curve(
    labels: ArrayLike, scores: ArrayLike, weights: ArrayLike | None = None
) -> PrecisionRecallCurve:
    """Precision-recall curve equal to sklearn's ``precision_recall_curve``; recall is NaN without positives.

    labels, scores, weights: as in ``average_precision``.
    """
    counts = threshold_counts(labels, scores, weights)
    tps = counts.true_positives.astype(np.float64)
    predicted = tps + counts.false_positives
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted != 0)
    recall = _divide_or_nan(tps, counts.n_positive)
    return PrecisionRecallCurve(
        precision=np.r_[precision[::-1], 1.0],
        recall=np.r_[recall[::-1], 0.0],
        thresholds=counts.thresholds[::-1].copy(),
    )
