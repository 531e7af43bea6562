"""MOOD 2020 challenge metrics: sample-level AP over cases and pixel-level AP over fixed batches of cases.

Predictions are read as MOOD's evaluator (MIC-DKFZ/mood ``scripts/evalresults.py``) reads them. Pixel task: the
voxel scores are cast to float16 (``get_fdata(dtype=np.float16)``: round to nearest, so scores closer than a
float16 step tie) and clipped to [0, 1]; a missing prediction, one whose shape differs from the label's, or a file
that cannot be read counts as all zeros. Sample task: the first line of ``<case>.txt`` as a float (no float16
cast), clipped to [0, 1]; a missing or unreadable file counts as 0. A NaN score is an error here; the evaluator
fails on it too. Pixel level (Zimmerer thesis §4.1): the cases are split once into fixed random batches of 20,
every method is scored on the same batches, AP is taken over the concatenated voxels of each batch, and the batch
APs are averaged with a non-finite AP (a batch without any anomalous voxel) counted as 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

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


def pixel_prediction(scores: ArrayLike | None, shape: tuple[int, ...], case: str) -> np.ndarray:
    """Voxel scores as the evaluator reads them: float16, clipped to [0, 1].

    scores: any real array, or None for a missing output. None, or an array whose shape differs from the labels'
    ``shape``, gives all zeros (a misshaped one with a warning naming ``case``). Raises ValueError on NaN.
    """
    if scores is None:
        return np.zeros(shape, dtype=np.float16)
    array = np.asarray(scores)
    if array.shape != shape:
        warnings.warn(f"{case}: prediction shape {array.shape} does not match the label shape {shape}; scored as "
                      "all zeros, as the MOOD evaluator does", stacklevel=2)  # fmt: skip
        return np.zeros(shape, dtype=np.float16)
    with np.errstate(over="ignore"):  # beyond float16's range: +-inf, clipped to 0 or 1 like the evaluator's
        array = array.astype(np.float16)
    if np.isnan(array).any():
        raise ValueError(f"{case}: scores contain {int(np.isnan(array).sum())} NaN values")
    return np.clip(array, 0.0, 1.0)


def read_pixel_prediction(path: str | Path, shape: tuple[int, ...]) -> np.ndarray:
    """A pixel-task prediction file as the evaluator reads it: (``shape``) float16 in [0, 1]; all zeros when the
    file is missing, unreadable or of another shape than the labels' ``shape``."""
    import nibabel

    path = Path(path)
    if not path.is_file():
        return np.zeros(shape, dtype=np.float16)
    try:
        scores = nibabel.load(path).get_fdata(dtype=np.float16)
    except Exception:  # the evaluator scores any file it cannot read as zeros
        warnings.warn(f"{path}: unreadable prediction; scored as all zeros, as the MOOD evaluator does", stacklevel=2)
        return np.zeros(shape, dtype=np.float16)
    return pixel_prediction(scores, shape, str(path))


def read_sample_prediction(path: str | Path) -> float:
    """A sample-task prediction file as the evaluator reads it: its first line as a float clipped to [0, 1]; 0 when
    the file is missing or its first line is not a number."""
    try:
        with Path(path).open() as stream:
            score = float(stream.readline())
    except (OSError, ValueError, UnicodeDecodeError):
        return 0.0
    return float(np.clip(score, 0.0, 1.0))


def _zero_if_not_finite(value: float) -> float:
    return value if np.isfinite(value) else 0.0


def mood_batch_aps(
    score_maps: Sequence[ArrayLike | None],
    label_maps: Sequence[ArrayLike],
    batch_size: int = MOOD_BATCH_SIZE,
    seed: int = 0,
) -> list[float]:
    """Voxel AP of each MOOD batch (order of ``mood_batches``), non-finite AP counted as 0.

    score_maps: per case, an array of voxel scores or None for a missing output, read as ``pixel_prediction``
    does (float16, clipped to [0, 1]; missing or misshaped: all zeros). label_maps: per case, a bool or 0/1
    array. Both may be lazy sequences that load a case on indexing; only one batch is held in memory at a time.
    """
    if len(score_maps) != len(label_maps):
        raise ValueError(f"got {len(score_maps)} score maps but {len(label_maps)} label maps")
    batch_aps = []
    for batch in mood_batches(len(label_maps), batch_size, seed):
        labels, scores = [], []
        for case in batch:
            is_anomalous = binary_labels(label_maps[case], what=f"case {case}: labels")
            labels.append(is_anomalous.ravel())
            scores.append(pixel_prediction(score_maps[case], is_anomalous.shape, f"case {case}").ravel())
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
    """MOOD sample-level score: AP of per-case scores clipped to [0, 1]; None counts as 0, non-finite AP as 0.

    scores: (N,) one score per case (not cast to float16, as the evaluator reads them), or None for a missing
    output. labels: (N,) bool or 0/1, True if abnormal.
    """
    is_abnormal = binary_labels(labels, what="case labels")
    if is_abnormal.ndim != 1 or len(scores) != is_abnormal.size:
        raise ValueError(f"got {len(scores)} scores for labels of shape {is_abnormal.shape}")
    values = np.array([0.0 if score is None else score for score in scores], dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError(f"case scores contain {int(np.isnan(values).sum())} NaN values")
    return _zero_if_not_finite(average_precision(is_abnormal, np.clip(values, 0.0, 1.0)))
