"""Dice of thresholded heatmaps, with the threshold calibrated on images kept apart from the test images.

A heatmap becomes a segmentation by ``heatmap >= threshold``. Choosing that threshold needs labelled anomalies,
which an unsupervised method does not have at test time, so ``calibrate_threshold`` picks it on a calibration
split and ``dice_at_threshold`` applies it to a disjoint test split (shared image names are refused).
``best_dice`` picks the threshold on the evaluated images themselves: an optimistic upper bound, not a result.
``dice_at_fifth_of_test_threshold`` is the rule of Zimmerer's thesis, Table 3.1: the threshold from a
seeded fifth of the labelled test images, Dice on the other four fifths; optimistic too, reported beside the
calibrated Dice and never used to choose anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from picard_ad.io.writers import strict_json
from picard_ad.metrics.ranking import binary_labels

DEFAULT_N_CANDIDATES = 100
THRESHOLD_FRACTION = 0.2  # the thesis' "1/5 of the test dataset" whose labels choose the threshold
# Candidate quantiles are taken from a strided subsample of the pooled calibration pixels of at most this size.
_MAX_POOLED_PIXELS = 2_000_000


def dice(pred_mask: ArrayLike, gt_mask: ArrayLike) -> float:
    """Dice coefficient 2|P and G| / (|P| + |G|); 1.0 when both masks are empty (perfect agreement).

    pred_mask, gt_mask: same shape, bool or 0/1.
    """
    pred = binary_labels(pred_mask, what="pred_mask")
    truth = binary_labels(gt_mask, what="gt_mask")
    if pred.shape != truth.shape:
        raise ValueError(f"pred_mask shape {pred.shape} does not match gt_mask shape {truth.shape}")
    total = np.count_nonzero(pred) + np.count_nonzero(truth)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(pred & truth) / total


def _dice_per_threshold(heatmap: ArrayLike, gt_mask: ArrayLike, thresholds: np.ndarray, name: str) -> np.ndarray:
    """Dice of ``heatmap >= t`` against gt_mask for every t in thresholds, from two sorts instead of K masks."""
    scores = np.asarray(heatmap)
    lesion = binary_labels(gt_mask, what=f"{name!r}: gt_mask")
    if scores.shape != lesion.shape:
        raise ValueError(f"{name!r}: heatmap shape {scores.shape} does not match gt_mask shape {lesion.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name!r}: heatmap contains NaN or infinite values")
    sorted_all = np.sort(scores, axis=None)
    sorted_lesion = np.sort(scores[lesion])
    n_predicted = sorted_all.size - np.searchsorted(sorted_all, thresholds, side="left")
    n_hit = sorted_lesion.size - np.searchsorted(sorted_lesion, thresholds, side="left")
    total = n_predicted + sorted_lesion.size
    return np.where(total > 0, 2.0 * n_hit / np.maximum(total, 1), 1.0)


def _check_split(heatmaps: Sequence, masks: Sequence, names: Sequence[str], split: str) -> tuple[str, ...]:
    if not len(heatmaps) == len(masks) == len(names):
        raise ValueError(f"{split}: got {len(heatmaps)} heatmaps, {len(masks)} masks and {len(names)} names")
    if not names:
        raise ValueError(f"{split}: no images")
    duplicates = sorted(str(name) for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"{split}: image names must be unique, repeated: {', '.join(duplicates)}")
    return tuple(str(name) for name in names)


def _candidate_thresholds(heatmaps: Sequence[ArrayLike], n_candidates: int) -> np.ndarray:
    """Distinct quantiles (levels 0..1) of the pooled pixels of the given heatmaps, ascending."""
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be at least 1, got {n_candidates}")
    arrays = [np.asarray(heatmap).ravel() for heatmap in heatmaps]
    stride = max(1, -(-sum(array.size for array in arrays) // _MAX_POOLED_PIXELS))
    pooled = np.concatenate([array[::stride] for array in arrays]).astype(np.float64)
    if not np.all(np.isfinite(pooled)):
        raise ValueError("heatmaps contain NaN or infinite values")
    return np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, n_candidates)))


@dataclass(frozen=True)
class ThresholdCalibration:
    """Threshold maximising the mean Dice of ``heatmap >= threshold`` over the images it was chosen on.

    threshold: heatmap units. mean_dice: mean Dice at that threshold on those images. candidates,
    mean_dice_per_candidate: the thresholds tried (ascending) and their mean Dice. image_names: the images used.
    optimistic: True when chosen on the evaluated images themselves (``best_dice``), an upper bound.
    """

    threshold: float
    mean_dice: float
    candidates: tuple[float, ...]
    mean_dice_per_candidate: tuple[float, ...]
    image_names: tuple[str, ...]
    optimistic: bool = False

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return strict_json(asdict(self))


@dataclass(frozen=True)
class DiceEvaluation:
    """Dice of thresholded heatmaps on a test split: the threshold, mean Dice, and Dice per image name."""

    threshold: float
    mean_dice: float
    image_names: tuple[str, ...]
    image_dice: tuple[float, ...]

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return strict_json(asdict(self))


def _choose_threshold(
    heatmaps: Sequence[ArrayLike],
    masks: Sequence[ArrayLike],
    names: tuple[str, ...],
    candidates: ArrayLike | None,
    n_candidates: int,
    optimistic: bool,
) -> ThresholdCalibration:
    if candidates is None:
        thresholds = _candidate_thresholds(heatmaps, n_candidates)
    else:
        thresholds = np.unique(np.asarray(candidates, dtype=np.float64))
        if thresholds.size == 0 or not np.all(np.isfinite(thresholds)):
            raise ValueError("candidates must be a non-empty set of finite thresholds")
    per_image = [_dice_per_threshold(h, m, thresholds, name) for h, m, name in zip(heatmaps, masks, names)]
    mean_dice = np.mean(per_image, axis=0)
    best = int(np.argmax(mean_dice))  # first maximum: the lowest threshold among equally good ones
    return ThresholdCalibration(
        threshold=float(thresholds[best]),
        mean_dice=float(mean_dice[best]),
        candidates=tuple(thresholds.tolist()),
        mean_dice_per_candidate=tuple(mean_dice.tolist()),
        image_names=names,
        optimistic=optimistic,
    )


def calibrate_threshold(
    heatmaps: Sequence[ArrayLike],
    masks: Sequence[ArrayLike],
    names: Sequence[str],
    candidates: ArrayLike | None = None,
    n_candidates: int = DEFAULT_N_CANDIDATES,
) -> ThresholdCalibration:
    """Choose the threshold maximising mean Dice on a calibration split (never the test split).

    heatmaps: per image, (H, W) finite anomaly scores. masks: per image, same shape, bool or 0/1 lesion mask.
    names: unique image names, used to refuse overlap with the test split. candidates: thresholds to try
    (heatmap units); default n_candidates quantiles (levels 0 to 1) of the pooled calibration pixels.
    """
    image_names = _check_split(heatmaps, masks, names, "calibration split")
    return _choose_threshold(heatmaps, masks, image_names, candidates, n_candidates, optimistic=False)


def dice_at_threshold(
    calibration: ThresholdCalibration,
    heatmaps: Sequence[ArrayLike],
    masks: Sequence[ArrayLike],
    names: Sequence[str],
) -> DiceEvaluation:
    """Dice of ``heatmap >= calibration.threshold`` on a test split disjoint from the calibration images.

    calibration: from ``calibrate_threshold``. heatmaps, masks, names: the test split, as in
    ``calibrate_threshold``; a name also in calibration.image_names raises ValueError.
    """
    image_names = _check_split(heatmaps, masks, names, "test split")
    shared = sorted(set(image_names) & set(calibration.image_names))
    if shared:
        raise ValueError(
            f"the test split shares {len(shared)} images with the calibration split "
            f"(threshold would be tuned on test images): {', '.join(shared)}"
        )
    threshold = np.array([calibration.threshold])
    image_dice = tuple(
        float(_dice_per_threshold(h, m, threshold, name)[0]) for h, m, name in zip(heatmaps, masks, image_names)
    )
    return DiceEvaluation(
        threshold=calibration.threshold,
        mean_dice=float(np.mean(image_dice)),
        image_names=image_names,
        image_dice=image_dice,
    )


def best_dice(
    heatmaps: Sequence[ArrayLike],
    masks: Sequence[ArrayLike],
    names: Sequence[str] | None = None,
    candidates: ArrayLike | None = None,
    n_candidates: int = DEFAULT_N_CANDIDATES,
) -> ThresholdCalibration:
    """Best mean Dice over thresholds chosen on these same images: an OPTIMISTIC UPPER BOUND, not a test result.

    The threshold is tuned on the images it is scored on, which an unsupervised method cannot do in practice;
    report it only next to ``dice_at_threshold``. Arguments as in ``calibrate_threshold``; names default to
    the image indices.
    """
    image_names = [str(index) for index in range(len(heatmaps))] if names is None else names
    checked_names = _check_split(heatmaps, masks, image_names, "best_dice images")
    return _choose_threshold(heatmaps, masks, checked_names, candidates, n_candidates, optimistic=True)


class _Picked(Sequence):
    """The items ``indices`` of a sequence, read on access (a lazy sequence stays lazy)."""

    def __init__(self, items: Sequence, indices: Sequence[int]):
        self._items, self._indices = items, list(indices)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._items[self._indices[index]]


def dice_at_fifth_of_test_threshold(
    heatmaps: Sequence[ArrayLike],
    masks: Sequence[ArrayLike],
    names: Sequence[str] | None = None,
    candidates: ArrayLike | None = None,
    n_candidates: int = DEFAULT_N_CANDIDATES,
    seed: int = 0,
) -> tuple[ThresholdCalibration, DiceEvaluation]:
    """Dice with the threshold chosen on a fifth of the test images (the thesis' Table 3.1 DSC): OPTIMISTIC.

    A seeded uniform choice of round(N / 5) of the N images (at least one, and at least one left) picks the
    threshold maximising their mean Dice, with their labels; the Dice is reported on the other images. The labels
    of test images choose the threshold, which an unsupervised method cannot do in practice: report it only next to
    ``dice_at_threshold`` of a threshold from other images, and never choose anything by it.

    Arguments as in ``best_dice`` (N >= 2 images); seed: of the choice. Returns (the threshold, chosen on the fifth
    and marked optimistic; the Dice of the other images at it).
    """
    image_names = [str(index) for index in range(len(heatmaps))] if names is None else names
    checked = _check_split(heatmaps, masks, image_names, "dice_at_fifth_of_test_threshold images")
    n = len(checked)
    if n < 2:
        raise ValueError(f"dice_at_fifth_of_test_threshold needs at least 2 images (a fifth and the rest), got {n}")
    n_threshold = min(n - 1, max(1, int(n * THRESHOLD_FRACTION + 0.5)))
    chosen = np.sort(np.random.default_rng(seed).choice(n, size=n_threshold, replace=False))
    rest = np.setdiff1d(np.arange(n), chosen)
    fifth = [checked[i] for i in chosen]
    calibration = _choose_threshold(_Picked(heatmaps, chosen), _Picked(masks, chosen), tuple(fifth), candidates,
                                    n_candidates, optimistic=True)  # fmt: skip
    evaluation = dice_at_threshold(calibration, _Picked(heatmaps, rest), _Picked(masks, rest),
                                   [checked[i] for i in rest])  # fmt: skip
    return calibration, evaluation
