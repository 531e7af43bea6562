"""Per-image pixel localization metrics, their aggregation over a test set, and image-level detection metrics.

PICARD (Konz et al. 2023, §5) scores each image on its own (pixel AUROC and sklearn-style pixel AP over the
whole slice) and reports the mean over images; Swiecicki et al. 2021 report the mean ratio of heatmap values
inside vs outside the lesion boxes over breast-tissue pixels only. Both are available here; ``region`` restricts
every number to a boolean region such as a tissue mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from picard_ad.io.writers import strict_json
from picard_ad.metrics.ranking import (
    average_precision_from_counts,
    binary_labels,
    roc_auc_from_counts,
    threshold_counts,
)

IMAGE_SCORE_QUANTILE = 0.99
"""The default image score of a heatmap: this quantile of its values over tissue (the whole map without tissue)."""


@dataclass(frozen=True)
class ImageMetrics:
    """Pixel localization metrics of one heatmap against its ground-truth mask, within the evaluated region.

    n_pixels, n_positive: pixels evaluated and lesion pixels among them. pixel_auroc, pixel_ap: NaN when the
    image lacks lesion or non-lesion pixels. inside_mean, outside_mean: mean heatmap value over lesion and
    non-lesion pixels (heatmap units). inside_outside_ratio: inside_mean / outside_mean, NaN unless both exist
    and outside_mean > 0.
    """

    name: str
    n_pixels: int
    n_positive: int
    pixel_auroc: float
    pixel_ap: float
    inside_mean: float
    outside_mean: float
    inside_outside_ratio: float

    @property
    def has_both_classes(self) -> bool:
        return 0 < self.n_positive < self.n_pixels

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON; undefined numbers become None."""
        return strict_json(asdict(self))


def _mean_or_nan(values: np.ndarray) -> float:
    return float(np.mean(values, dtype=np.float64)) if values.size else float("nan")


def pixel_metrics(
    heatmap: ArrayLike, gt_mask: ArrayLike, region: ArrayLike | None = None, name: str = ""
) -> ImageMetrics:
    """Pixel AUROC, pixel AP and Swiecicki's inside/outside mean ratio of one image.

    heatmap: (H, W) or any shape, real anomaly scores (higher = more anomalous), finite inside the region.
    gt_mask: same shape, bool or 0/1, True on lesion pixels. region: optional same shape, bool or 0/1; only
    its pixels are evaluated (e.g. breast tissue). name: image identifier, used in results and errors.
    """
    label = repr(name) if name else "image"
    scores = np.asarray(heatmap)
    mask = np.asarray(gt_mask)
    if scores.shape != mask.shape:
        raise ValueError(f"{label}: heatmap shape {scores.shape} does not match gt_mask shape {mask.shape}")
    is_lesion = binary_labels(mask, what=f"{label}: gt_mask")
    if region is not None:
        region_array = np.asarray(region)
        if region_array.shape != scores.shape:
            raise ValueError(f"{label}: region shape {region_array.shape} does not match heatmap shape {scores.shape}")
        inside_region = binary_labels(region_array, what=f"{label}: region")
        scores, is_lesion = scores[inside_region], is_lesion[inside_region]
    try:
        counts = threshold_counts(is_lesion, scores)
    except ValueError as error:
        raise ValueError(f"{label}: heatmap: {error}") from error
    inside_mean = _mean_or_nan(scores[is_lesion])
    outside_mean = _mean_or_nan(scores[~is_lesion])
    ratio = inside_mean / outside_mean if outside_mean > 0 and not math.isnan(inside_mean) else float("nan")
    return ImageMetrics(
        name=name,
        n_pixels=int(is_lesion.size),
        n_positive=int(np.count_nonzero(is_lesion)),
        pixel_auroc=roc_auc_from_counts(counts),
        pixel_ap=average_precision_from_counts(counts),
        inside_mean=inside_mean,
        outside_mean=outside_mean,
        inside_outside_ratio=ratio,
    )


@dataclass(frozen=True)
class LocalizationSummary:
    """Pixel metrics aggregated over images (mean, median, sample std with ddof=1; NaN when undefined).

    n_scored: images with both lesion and non-lesion pixels, the only ones in the pixel AUROC/AP statistics.
    n_ratio: images in the ratio statistics (scored and with a positive mean score outside the lesion).
    Images left out are named in images_without_positive / images_without_negative and explained in notes.
    """

    n_images: int
    n_scored: int
    mean_pixel_auroc: float
    median_pixel_auroc: float
    std_pixel_auroc: float
    mean_pixel_ap: float
    median_pixel_ap: float
    std_pixel_ap: float
    n_ratio: int
    mean_ratio: float
    median_ratio: float
    std_ratio: float
    images_without_positive: tuple[str, ...]
    images_without_negative: tuple[str, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON; undefined numbers become None, tuples become lists."""
        return strict_json(asdict(self))


def _statistics(values: list[float]) -> tuple[float, float, float]:
    """Mean, median and sample standard deviation; NaN where too few values."""
    if not values:
        return float("nan"), float("nan"), float("nan")
    array = np.asarray(values, dtype=np.float64)
    std = float(np.std(array, ddof=1)) if array.size > 1 else float("nan")
    return float(np.mean(array)), float(np.median(array)), std


def _name_list(names: Sequence[str]) -> str:
    return ", ".join(name or "<unnamed>" for name in names)


def summarize(metrics: Sequence[ImageMetrics]) -> LocalizationSummary:
    """Mean, median and std of pixel AUROC, pixel AP and inside/outside ratio over images.

    metrics: one ImageMetrics per test image (from ``pixel_metrics``).
    """
    scored = [item for item in metrics if item.has_both_classes]
    without_positive = tuple(item.name for item in metrics if item.n_positive == 0)
    without_negative = tuple(item.name for item in metrics if item.n_positive > 0 and not item.has_both_classes)
    ratios = [item.inside_outside_ratio for item in scored if math.isfinite(item.inside_outside_ratio)]
    notes = []
    if not metrics:
        notes.append("no images: every statistic is undefined")
    if without_positive:
        notes.append(
            f"{len(without_positive)} of {len(metrics)} images have no lesion pixel and are left out of the "
            f"pixel AUROC/AP and ratio statistics: {_name_list(without_positive)}"
        )
    if without_negative:
        notes.append(
            f"{len(without_negative)} of {len(metrics)} images have no non-lesion pixel and are left out of the "
            f"pixel AUROC/AP and ratio statistics: {_name_list(without_negative)}"
        )
    undefined_ratio = [item.name for item in scored if not math.isfinite(item.inside_outside_ratio)]
    if undefined_ratio:
        notes.append(
            f"{len(undefined_ratio)} images have a non-positive mean score outside the lesion, so no "
            f"inside/outside ratio: {_name_list(undefined_ratio)}"
        )
    mean_auroc, median_auroc, std_auroc = _statistics([item.pixel_auroc for item in scored])
    mean_ap, median_ap, std_ap = _statistics([item.pixel_ap for item in scored])
    mean_ratio, median_ratio, std_ratio = _statistics(ratios)
    return LocalizationSummary(
        n_images=len(metrics),
        n_scored=len(scored),
        mean_pixel_auroc=mean_auroc,
        median_pixel_auroc=median_auroc,
        std_pixel_auroc=std_auroc,
        mean_pixel_ap=mean_ap,
        median_pixel_ap=median_ap,
        std_pixel_ap=std_ap,
        n_ratio=len(ratios),
        mean_ratio=mean_ratio,
        median_ratio=median_ratio,
        std_ratio=std_ratio,
        images_without_positive=without_positive,
        images_without_negative=without_negative,
        notes=tuple(notes),
    )


def image_level_metrics(scores: ArrayLike, labels: ArrayLike) -> dict[str, Any]:
    """Image-level detection AUROC and AP; JSON-ready dict, undefined values are None.

    scores: (N,) one finite anomaly score per image. labels: (N,) bool or 0/1, True for abnormal images.
    Returns image_auroc, image_ap (float or None), n_normal, n_abnormal (int).
    """
    score_array = np.asarray(scores)
    is_abnormal = binary_labels(labels, what="image labels")
    if score_array.ndim != 1 or score_array.shape != is_abnormal.shape:
        raise ValueError(
            f"image scores and labels must be 1-D of equal length, got {score_array.shape} and {is_abnormal.shape}"
        )
    counts = threshold_counts(is_abnormal, score_array)
    n_abnormal = int(np.count_nonzero(is_abnormal))
    return strict_json(
        {
            "image_auroc": roc_auc_from_counts(counts),
            "image_ap": average_precision_from_counts(counts),
            "n_normal": int(is_abnormal.size - n_abnormal),
            "n_abnormal": n_abnormal,
        }
    )
