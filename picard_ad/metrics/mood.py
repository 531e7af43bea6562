"""MOOD 2020 challenge metrics: sample-level AP over cases and pixel-level AP over fixed batches of cases.

MOOD (Zimmerer thesis §4.1) clamps every score to [0, 1] and counts a missing output as 0. Pixel level: the
cases are split once into fixed random batches of 20, every method is scored on the same batches, AP is taken
over the concatenated voxels of each batch, and the batch APs are averaged with a non-finite AP (a batch without
any anomalous voxel) counted as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from picard_ad.metrics.ranking import average_precision, binary_labels

MOOD_BATCH_SIZE = 20


def mood_batches(n_cases: int, batch_size: int = MOOD_BATCH_SIZE, seed: int = 0) -> list[tuple[int, ...]]:
    """Fixed case batches: a seeded permutation of range(n_cases) cut into batches of batch_size (last shorter).

    Depends only on (n_cases, batch_size, seed), so every method evaluated on the same cases gets the same batches.
    """
    if n_cases < 0 or batch_size < 1:
        raise ValueError(f"need n_cases >= 0 and batch_size >= 1, got {n_cases} and {batch_size}")
    order = np.random.default_rng(seed).permutation(n_cases)
    return [tuple(int(case) for case in order[start : start + batch_size]) for start in range(0, n_cases, batch_size)]


def _clamped(scores: ArrayLike | None, shape: tuple[int, ...], case: str) -> np.ndarray:
    """Scores clamped to [0, 1] in their own float dtype (volumes are large); a missing output (None) is all zeros."""
    if scores is None:
        return np.zeros(shape, dtype=np.float32)
    array = np.asarray(scores)
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    if array.shape != shape:
        raise ValueError(f"{case}: score shape {array.shape} does not match label shape {shape}")
    if np.isnan(array).any():
        raise ValueError(f"{case}: scores contain {int(np.isnan(array).sum())} NaN values")
    return np.clip(array, 0.0, 1.0)


def _zero_if_not_finite(value: float) -> float:
    return value if np.isfinite(value) else 0.0


def mood_batch_aps(
    score_maps: Sequence[ArrayLike | None],
    label_maps: Sequence[ArrayLike],
    batch_size: int = MOOD_BATCH_SIZE,
    seed: int = 0,
) -> list[float]:
    """Voxel AP of each MOOD batch (order of ``mood_batches``), non-finite AP counted as 0.

    score_maps: per case, an array of voxel scores (any shape; clamped to [0, 1]) or None for a missing output.
    label_maps: per case, a bool or 0/1 array of the same shape. Both may be lazy sequences that load a case
    on indexing; only one batch is held in memory at a time.
    """
    if len(score_maps) != len(label_maps):
        raise ValueError(f"got {len(score_maps)} score maps but {len(label_maps)} label maps")
    batch_aps = []
    for batch in mood_batches(len(label_maps), batch_size, seed):
        labels, scores = [], []
        for case in batch:
            is_anomalous = binary_labels(label_maps[case], what=f"case {case}: labels")
            labels.append(is_anomalous.ravel())
            scores.append(_clamped(score_maps[case], is_anomalous.shape, f"case {case}").ravel())
        batch_aps.append(_zero_if_not_finite(average_precision(np.concatenate(labels), np.concatenate(scores))))
    return batch_aps


def mood_pixel_ap(
    score_maps: Sequence[ArrayLike | None],
    label_maps: Sequence[ArrayLike],
    batch_size: int = MOOD_BATCH_SIZE,
    seed: int = 0,
) -> float:
    """MOOD pixel-level score: mean voxel AP over fixed batches of cases (see ``mood_batch_aps``); NaN if no case."""
    batch_aps = mood_batch_aps(score_maps, label_maps, batch_size, seed)
    return float(np.mean(batch_aps)) if batch_aps else float("nan")


def mood_sample_ap(scores: Sequence[float | None], labels: ArrayLike) -> float:
    """MOOD sample-level score: AP of per-case scores clamped to [0, 1]; None counts as 0, non-finite AP as 0.

    scores: (N,) one score per case, or None for a missing output. labels: (N,) bool or 0/1, True if abnormal.
    """
    is_abnormal = binary_labels(labels, what="case labels")
    if is_abnormal.ndim != 1 or len(scores) != is_abnormal.size:
        raise ValueError(f"got {len(scores)} scores for labels of shape {is_abnormal.shape}")
    values = np.array([0.0 if score is None else score for score in scores], dtype=np.float64)
    return _zero_if_not_finite(average_precision(is_abnormal, _clamped(values, values.shape, "case scores")))
