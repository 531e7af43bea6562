"""Lesion-level sensitivity at fixed false positives per image (FROC) from heatmap peaks, with the DBTex hit rule.

A heatmap-only method outputs no detections, so its peaks stand in for them: the local maxima of the heatmap
after non-maximum suppression, each scored by its heatmap value. A peak hits a lesion box when it lies within
max(half the box diagonal, 100 px) of the box centre, the rule of the DBTex challenge and of the BCS-DBT
baseline evaluation (Buda et al. 2021; without the slice condition, since heatmaps are per slice). At a peak
threshold t, a lesion is detected when any peak scoring >= t hits it (each lesion counts once, however many
peaks hit it), and every peak scoring >= t that hits no lesion is a false positive. Sweeping t gives the FROC
curve: sensitivity against mean false positives per image, normal images included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage
from scipy.spatial import cKDTree

from picard_ad.io.annotations import Box
from picard_ad.io.writers import strict_json
from picard_ad.metrics.ranking import binary_labels

DBTEX_MIN_HIT_DISTANCE = 100.0  # px
DEFAULT_FP_RATES = (0.5, 1.0, 2.0, 4.0)
SizeMeasure = Literal["diagonal", "area"]
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Peak:
    """A heatmap peak: pixel (row, column) and its heatmap value."""

    row: int
    column: int
    value: float


def find_peaks(heatmap: ArrayLike, radius: float, region: ArrayLike | None = None) -> list[Peak]:
    """Local maxima of a heatmap after non-maximum suppression, strongest first.

    A pixel is a peak when no pixel in the (2r+1) x (2r+1) square around it scores higher, r = floor(radius),
    so kept peaks are more than r rows or columns apart. A plateau of equal maxima counts once, at its member
    nearest to its centroid; of equal maxima that are not connected but lie that close, the first found is kept.

    heatmap: (H, W) finite scores. radius: suppression radius in pixels (>= 1). region: optional (H, W) bool or
    0/1; peaks are searched among its pixels only (e.g. tissue).
    """
    scores = np.asarray(heatmap, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"expected an (H, W) heatmap, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("heatmap contains NaN or infinite values")
    if radius < 1:
        raise ValueError(f"peak radius must be at least 1 pixel, got {radius}")
    half = int(math.floor(radius))
    if region is not None:
        inside = binary_labels(region, what="region")
        if inside.shape != scores.shape:
            raise ValueError(f"region shape {inside.shape} does not match heatmap shape {scores.shape}")
        scores = np.where(inside, scores, -np.inf)
    # A square window is separable, so the maximum filter costs O(pixels) whatever the radius.
    window_max = ndimage.maximum_filter(scores, size=2 * half + 1, mode="constant", cval=-np.inf)
    is_maximum = (scores == window_max) & np.isfinite(scores)
    plateaus, n_plateaus = ndimage.label(is_maximum, structure=_EIGHT_CONNECTED)
    if n_plateaus == 0:
        return []
    rows, columns = np.nonzero(is_maximum)
    members = plateaus[rows, columns] - 1
    sizes = np.bincount(members, minlength=n_plateaus)
    centre_rows = np.bincount(members, weights=rows, minlength=n_plateaus) / sizes
    centre_columns = np.bincount(members, weights=columns, minlength=n_plateaus) / sizes
    distance = np.hypot(rows - centre_rows[members], columns - centre_columns[members])
    # Per plateau the member nearest its centroid: sort by (plateau, distance) and take each plateau's first.
    order = np.lexsort((distance, members))
    first = order[np.r_[True, members[order][1:] != members[order][:-1]]]
    points = np.column_stack([rows[first], columns[first]])
    values = scores[points[:, 0], points[:, 1]]
    kept = _suppress_ties(points, half)
    order = np.lexsort((points[kept, 1], points[kept, 0], -values[kept]))
    chosen = np.flatnonzero(kept)[order]
    return [Peak(int(points[i, 0]), int(points[i, 1]), float(values[i])) for i in chosen]


def _suppress_ties(points: np.ndarray, half: int) -> np.ndarray:
    """Keep-mask over window maxima: of two within ``half`` rows and columns (hence equal), keep the first."""
    pairs = cKDTree(points).query_pairs(half, p=np.inf, output_type="ndarray")
    keep = np.ones(len(points), dtype=bool)
    later: dict[int, list[int]] = {}
    for a, b in np.sort(pairs, axis=1):
        later.setdefault(int(a), []).append(int(b))
    for index in sorted(later):
        if keep[index]:
            keep[later[index]] = False
    return keep


def lesions_from_mask(mask: ArrayLike) -> list[Box]:
    """Bounding box of each 8-connected lesion region of a mask, in raster order of the regions' first pixel.

    mask: (H, W) bool or 0/1.
    """
    lesion = binary_labels(mask, what="lesion mask")
    labels, _ = ndimage.label(lesion, structure=_EIGHT_CONNECTED)
    return [
        Box(x=cols.start, y=rows.start, width=cols.stop - cols.start, height=rows.stop - rows.start)
        for rows, cols in ndimage.find_objects(labels)
    ]


def hit_radius(box: Box, min_distance: float = DBTEX_MIN_HIT_DISTANCE) -> float:
    """Largest peak distance from the box centre that still hits it: max(diagonal / 2, min_distance), pixels."""
    return max(box.diagonal / 2.0, min_distance)


@dataclass(frozen=True)
class ImageDetections:
    """Peaks of one image matched to its lesions.

    lesion_scores: per lesion, the highest value of a peak hitting it (-inf when none does): the lesion is
    detected at every threshold up to that value. false_positive_scores: values of the peaks hitting no lesion.
    lesion_sizes: per lesion, its size in the chosen measure (box diagonal in px or area in px^2).
    """

    name: str
    lesion_scores: tuple[float, ...]
    lesion_sizes: tuple[float, ...]
    false_positive_scores: tuple[float, ...]
    n_peaks: int


def match_peaks(
    peaks: Sequence[Peak],
    lesions: Sequence[Box],
    min_distance: float = DBTEX_MIN_HIT_DISTANCE,
    size_measure: SizeMeasure = "diagonal",
    name: str = "",
) -> ImageDetections:
    """Match one image's peaks to its lesion boxes with the DBTex rule.

    peaks: from ``find_peaks``. lesions: the image's boxes (centre and diagonal in pixels). min_distance: the
    rule's lower bound on the hit radius, pixels. size_measure: "diagonal" (px) or "area" (px^2).
    """
    if size_measure not in ("diagonal", "area"):
        raise ValueError(f"size_measure must be 'diagonal' or 'area', got {size_measure!r}")
    values = np.array([peak.value for peak in peaks], dtype=np.float64)
    positions = np.array([(peak.row, peak.column) for peak in peaks], dtype=np.float64).reshape(-1, 2)
    centres = np.array([box.center for box in lesions], dtype=np.float64).reshape(-1, 2)
    radii = np.array([hit_radius(box, min_distance) for box in lesions], dtype=np.float64)
    distance = np.hypot(
        positions[:, None, 0] - centres[None, :, 0], positions[:, None, 1] - centres[None, :, 1]
    )  # (peaks, lesions)
    hits = distance <= radii[None, :]
    lesion_scores = np.where(hits, values[:, None], -np.inf).max(axis=0, initial=-np.inf)
    sizes = [box.diagonal if size_measure == "diagonal" else float(box.width * box.height) for box in lesions]
    return ImageDetections(
        name=name,
        lesion_scores=tuple(float(score) for score in lesion_scores),
        lesion_sizes=tuple(sizes),
        false_positive_scores=tuple(float(value) for value in values[~hits.any(axis=1)]),
        n_peaks=len(peaks),
    )


@dataclass(frozen=True)
class FrocCurve:
    """Sensitivity against mean false positives per image, one point per distinct peak threshold (descending).

    Starts at threshold +inf with (0 FP, sensitivity 0). thresholds, mean_fp_per_image, sensitivity: (K,) float64.
    """

    thresholds: np.ndarray
    mean_fp_per_image: np.ndarray
    sensitivity: np.ndarray
    n_lesions: int
    n_images: int

    def operating_threshold(self, fp_rate: float) -> float:
        """Lowest threshold whose mean false positives per image do not exceed fp_rate (+inf if none)."""
        allowed = np.flatnonzero(self.mean_fp_per_image <= fp_rate)
        return float(self.thresholds[allowed[-1]]) if allowed.size else math.inf


def _scores(detections: Sequence[ImageDetections], field: str) -> np.ndarray:
    return np.array([value for item in detections for value in getattr(item, field)], dtype=np.float64)


def froc_curve(detections: Sequence[ImageDetections]) -> FrocCurve:
    """FROC curve over images (normal images count in the false positives per image).

    detections: one ImageDetections per evaluated image, from ``match_peaks``.
    """
    if not detections:
        raise ValueError("no images to compute a FROC curve on")
    lesion_scores = np.sort(_scores(detections, "lesion_scores"))
    fp_scores = np.sort(_scores(detections, "false_positive_scores"))
    candidates = np.concatenate([lesion_scores[np.isfinite(lesion_scores)], fp_scores])
    thresholds = np.r_[np.inf, np.unique(candidates)[::-1]]
    detected = lesion_scores.size - np.searchsorted(lesion_scores, thresholds, side="left")
    false_positives = fp_scores.size - np.searchsorted(fp_scores, thresholds, side="left")
    sensitivity = detected / lesion_scores.size if lesion_scores.size else np.full(thresholds.size, np.nan)
    return FrocCurve(
        thresholds=thresholds,
        mean_fp_per_image=false_positives / len(detections),
        sensitivity=np.asarray(sensitivity, dtype=np.float64),
        n_lesions=int(lesion_scores.size),
        n_images=len(detections),
    )


@dataclass(frozen=True)
class SizeBin:
    """Lesions whose size lies in [low, high): how many, and the sensitivity at each FP rate (NaN if none)."""

    low: float
    high: float
    n_lesions: int
    sensitivity: tuple[float, ...]

    @property
    def label(self) -> str:
        return f">= {self.low:g}" if math.isinf(self.high) else f"{self.low:g} - {self.high:g}"


@dataclass(frozen=True)
class LesionSensitivity:
    """Lesion sensitivity at fixed mean false positives per image, overall and per lesion size bin.

    thresholds: the peak threshold of each operating point (lowest with FP per image <= the rate).
    size_measure: "diagonal" (px) or "area" (px^2) of the lesion box.
    """

    fp_rates: tuple[float, ...]
    sensitivity: tuple[float, ...]
    thresholds: tuple[float, ...]
    n_lesions: int
    n_images: int
    size_measure: str
    size_bins: tuple[SizeBin, ...]
    curve: FrocCurve

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (curve left out); undefined numbers become None, infinities too."""
        return strict_json(
            {
                "fp_per_image": list(self.fp_rates),
                "sensitivity": list(self.sensitivity),
                "thresholds": list(self.thresholds),
                "n_lesions": self.n_lesions,
                "n_images": self.n_images,
                "size_measure": self.size_measure,
                "by_size": [
                    {"bin": item.label, "low": item.low, "high": item.high, "n_lesions": item.n_lesions,
                     "sensitivity": list(item.sensitivity)}
                    for item in self.size_bins
                ],
            }
        )


def lesion_sensitivity(
    detections: Sequence[ImageDetections],
    fp_rates: Sequence[float] = DEFAULT_FP_RATES,
    size_edges: Sequence[float] = (),
    size_measure: SizeMeasure = "diagonal",
) -> LesionSensitivity:
    """Sensitivity at each mean-FP-per-image rate, overall and per size bin, at the same operating thresholds.

    detections: per image, from ``match_peaks`` (with the same size_measure). fp_rates: false positives per
    image, e.g. 0.5, 1, 2, 4. size_edges: ascending inner bin edges in the size measure's unit; bins are
    [0, e1), [e1, e2), ..., [ek, inf). Sensitivity is NaN when there is no lesion.
    """
    rates = tuple(float(rate) for rate in fp_rates)
    if any(not rate >= 0 for rate in rates):
        raise ValueError(f"false-positive rates must be non-negative, got {list(rates)}")
    edges = [float(edge) for edge in size_edges]
    if any(edge <= 0 for edge in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"size bin edges must be positive and ascending, got {edges}")
    curve = froc_curve(detections)
    thresholds = tuple(curve.operating_threshold(rate) for rate in rates)
    scores = _scores(detections, "lesion_scores")
    sizes = _scores(detections, "lesion_sizes")

    def sensitivities(selected: np.ndarray) -> tuple[float, ...]:
        if not selected.size:
            return tuple(float("nan") for _ in thresholds)
        return tuple(float(np.mean(selected >= threshold)) for threshold in thresholds)

    bounds = [0.0, *edges, math.inf]
    bins = tuple(
        SizeBin(low, high, int(np.count_nonzero(chosen)), sensitivities(scores[chosen]))
        for low, high in zip(bounds, bounds[1:])
        for chosen in [(sizes >= low) & (sizes < high)]
    )
    return LesionSensitivity(
        fp_rates=rates,
        sensitivity=sensitivities(scores),
        thresholds=thresholds,
        n_lesions=curve.n_lesions,
        n_images=curve.n_images,
        size_measure=size_measure,
        size_bins=bins,
        curve=curve,
    )
