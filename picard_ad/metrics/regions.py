"""Per-region overlap (PRO) curve and its normalised area up to a false-positive rate (AUPRO), as in MVTec AD.

Each connected component of the ground truth (8-connectivity, per image) is one region. At a threshold t the
per-region overlap is the mean over all regions of the dataset of the fraction of the region's pixels scoring
>= t, and the false-positive rate is the fraction of all non-lesion pixels scoring >= t. AUPRO is the area under
PRO(FPR) from 0 to ``fpr_limit`` divided by ``fpr_limit``, so a perfect map scores 1. Large and small lesions
weigh the same, unlike pixel AUROC, where a large lesion outweighs many small ones.

The curve is exact: it has a point at every distinct score, where FPR is the count of non-lesion pixels at or
above it over their total, and PRO the sum of 1 / (region size x number of regions) over region pixels at or
above it. PRO never exceeds 1 by construction, and the integral stops at an interpolated point exactly at
``fpr_limit``: the normalisation cannot push AUPRO above 1 (anomalib before 2.3 could, #1651).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from picard_ad.metrics.ranking import binary_labels, threshold_counts

DEFAULT_FPR_LIMIT = 0.3
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


class ProCurve(NamedTuple):
    """PRO against FPR, from (0, 0) at threshold +inf to (1, 1); fpr, pro, thresholds are (K,) float64.

    n_regions: ground-truth regions that count; n_negative: non-lesion pixels evaluated.
    """

    fpr: np.ndarray
    pro: np.ndarray
    thresholds: np.ndarray
    n_regions: int
    n_negative: int


def area_under_pro(curve: ProCurve, fpr_limit: float = DEFAULT_FPR_LIMIT) -> float:
    """Area under PRO(FPR) from FPR 0 to ``fpr_limit``, divided by ``fpr_limit``; in [0, 1], NaN if undefined.

    curve: from ``ProAccumulator.curve`` or ``pro_curve``. fpr_limit: in (0, 1].
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    if curve.n_regions == 0 or curve.n_negative == 0:
        return float("nan")
    # Rounding can leave the last FPR a hair below 1; the curve is complete, so it ends at exactly (1, 1).
    fpr = np.clip(curve.fpr, 0.0, 1.0)
    pro = np.clip(curve.pro, 0.0, 1.0)
    fpr[-1], pro[-1] = 1.0, 1.0
    inside = int(np.searchsorted(fpr, fpr_limit, side="right"))
    xs, ys = fpr[:inside], pro[:inside]
    if xs[-1] < fpr_limit:
        # Linear interpolation between the last point within the limit and the first point past it.
        x0, x1, y0, y1 = fpr[inside - 1], fpr[inside], pro[inside - 1], pro[inside]
        end = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        xs, ys = np.r_[xs, fpr_limit], np.r_[ys, end]
    area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))
    return min(max(area / fpr_limit, 0.0), 1.0)


class ProAccumulator:
    """Collects images one at a time and computes the dataset's PRO curve and AUPRO over all of them.

    stride: evaluate every stride-th row and column only (regions are still found at full resolution); 1 is
    exact, larger strides bound memory on large test sets (a float32 map keeps about 4 bytes per evaluated
    pixel, and computing the curve needs a few times that).
    """

    def __init__(self, stride: int = 1):
        if stride < 1:
            raise ValueError(f"stride must be at least 1, got {stride}")
        self.stride = stride
        self.n_images = 0
        self.n_regions = 0  # regions with at least one evaluated pixel: the ones PRO averages over
        self.n_regions_unseen = 0  # regions with no evaluated pixel (outside the region, or between strides)
        self._region_scores: list[np.ndarray] = []
        self._region_sizes: list[np.ndarray] = []
        self._negative_scores: list[np.ndarray] = []

    def add(self, heatmap: ArrayLike, gt_mask: ArrayLike, region: ArrayLike | None = None, name: str = "") -> None:
        """Add one image.

        heatmap: (H, W) finite anomaly scores. gt_mask: (H, W) bool or 0/1 lesion mask. region: optional (H, W)
        bool or 0/1; only its pixels are evaluated (e.g. tissue). name: image identifier for errors.
        """
        label = repr(name) if name else "image"
        scores = np.asarray(heatmap)
        lesion = binary_labels(gt_mask, what=f"{label}: gt_mask")
        if scores.ndim != 2 or scores.shape != lesion.shape:
            raise ValueError(f"{label}: heatmap {scores.shape} and gt_mask {lesion.shape} must be equal (H, W) shapes")
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"{label}: heatmap contains NaN or infinite values")
        labels, n_regions = ndimage.label(lesion, structure=_EIGHT_CONNECTED)
        keep = np.ones(scores.shape, dtype=bool) if region is None else binary_labels(region, what=f"{label}: region")
        if keep.shape != scores.shape:
            raise ValueError(f"{label}: region shape {keep.shape} does not match heatmap shape {scores.shape}")
        step = (slice(None, None, self.stride),) * 2
        scores, labels, keep = scores[step], labels[step], keep[step]
        kept_labels = labels[keep]
        kept_scores = scores[keep]
        sizes = np.bincount(kept_labels, minlength=n_regions + 1)
        in_region = kept_labels > 0
        self._region_scores.append(kept_scores[in_region])
        self._region_sizes.append(sizes[kept_labels[in_region]].astype(np.int64))
        self._negative_scores.append(kept_scores[~in_region])
        self.n_regions_unseen += int(np.count_nonzero(sizes[1:] == 0))
        self.n_regions += int(np.count_nonzero(sizes[1:]))
        self.n_images += 1

    @property
    def n_negative(self) -> int:
        return int(sum(scores.size for scores in self._negative_scores))

    def curve(self) -> ProCurve:
        """The PRO curve over every image added so far (exact at every distinct score)."""
        n_regions, n_negative = self.n_regions, self.n_negative
        region_scores = np.concatenate(self._region_scores) if self._region_scores else np.empty(0)
        negative_scores = np.concatenate(self._negative_scores) if self._negative_scores else np.empty(0)
        if n_regions == 0 or n_negative == 0:
            nan = np.array([np.nan])
            return ProCurve(nan, nan, np.array([np.inf]), n_regions, n_negative)
        scores = np.concatenate([region_scores, negative_scores])
        is_region = np.zeros(scores.size, dtype=bool)
        is_region[: region_scores.size] = True
        # The unweighted counts give the distinct scores and exact negative counts from a value sort (no argsort);
        # each region pixel then adds its weight 1 / (region size x regions) at its own score.
        counts = threshold_counts(is_region, scores)
        n_thresholds = counts.thresholds.size
        slot = n_thresholds - 1 - np.searchsorted(counts.thresholds[::-1], region_scores)
        weights = 1.0 / (np.concatenate(self._region_sizes) * float(n_regions))
        pro = np.cumsum(np.bincount(slot, weights=weights, minlength=n_thresholds))
        # The PRO total is 1 up to rounding; dividing by it makes the curve reach exactly 1 once all is counted.
        return ProCurve(
            fpr=np.r_[0.0, counts.false_positives / n_negative],
            pro=np.r_[0.0, pro / pro[-1]],
            thresholds=np.r_[np.inf, counts.thresholds],
            n_regions=n_regions,
            n_negative=n_negative,
        )

    def aupro(self, fpr_limit: float = DEFAULT_FPR_LIMIT) -> float:
        """Normalised area under the PRO curve up to fpr_limit (see ``area_under_pro``)."""
        return area_under_pro(self.curve(), fpr_limit)


def pro_curve(
    heatmaps: Sequence[ArrayLike], masks: Sequence[ArrayLike], regions: Sequence[ArrayLike] | None = None
) -> ProCurve:
    """PRO curve of a set of images.

    heatmaps: per image (H, W) finite scores. masks: per image (H, W) bool or 0/1 lesion masks. regions:
    optional per image (H, W) bool evaluation regions (e.g. tissue masks).
    """
    if len(heatmaps) != len(masks) or (regions is not None and len(regions) != len(heatmaps)):
        raise ValueError("heatmaps, masks and regions must have one entry per image")
    accumulator = ProAccumulator()
    for index, (heatmap, mask) in enumerate(zip(heatmaps, masks)):
        accumulator.add(heatmap, mask, None if regions is None else regions[index], name=str(index))
    return accumulator.curve()


def aupro(
    heatmaps: Sequence[ArrayLike],
    masks: Sequence[ArrayLike],
    regions: Sequence[ArrayLike] | None = None,
    fpr_limit: float = DEFAULT_FPR_LIMIT,
) -> float:
    """AUPRO of a set of images up to fpr_limit (default 0.3), normalised to [0, 1]; NaN without regions.

    Arguments as in ``pro_curve``; fpr_limit in (0, 1].
    """
    return area_under_pro(pro_curve(heatmaps, masks, regions), fpr_limit)
