"""How much of an anomaly map a trivial map explains: rank correlation over normal tissue.

A map that ranks normal tissue pixels like plain brightness does (Spearman's rho near 1) mostly reports
brightness, whatever it was built to score; lesions that are bright then look found for the wrong reason. The
benchmark reports each method's mean rho with the brightness reference over the tissue pixels outside lesions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman's rho of two arrays of equal size (ties get average ranks); NaN when either is constant or has
    fewer than 3 values."""
    first, second = np.ravel(first), np.ravel(second)
    if first.shape != second.shape:
        raise ValueError(f"need arrays of equal size, got {first.size} and {second.size} values")
    if first.size < 3 or np.ptp(first) == 0 or np.ptp(second) == 0:
        return math.nan
    return float(stats.spearmanr(first, second).statistic)


def mean_rank_correlation(maps: Sequence[np.ndarray], references: Sequence[np.ndarray],
                          regions: Sequence[np.ndarray]) -> float:  # fmt: skip
    """Mean over images of ``rank_correlation`` of a map and a reference map over a region (bool mask) of each
    image; images where it is undefined are left out; NaN when it is undefined for all."""
    rhos = [rank_correlation(score_map[region], reference[region])
            for score_map, reference, region in zip(maps, references, regions, strict=True)]  # fmt: skip
    finite = [rho for rho in rhos if math.isfinite(rho)]
    return float(np.mean(finite)) if finite else math.nan
