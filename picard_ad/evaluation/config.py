"""Settings of an evaluation: where ``picard-ad evaluate`` reads its inputs, and how every metric is computed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picard_ad.errors import ConfigError


@dataclass(frozen=True)
class EvaluationConfig:
    """Settings of ``picard-ad evaluate``; YAML keys and flags share these names. Lengths in pixels.

    annotations: a folder of mask images, a boxes CSV (image,x,y,width,height), a circles CSV (image,x,y,radius),
        or ``bcs-dbt:BOXES.csv,FILE_PATHS.csv[,ROOT]``. Annotations name images by their path relative to the
        annotated root (a bare file name does when it is not ambiguous). Images without annotation are normal;
        they, and annotated images without heatmap, are listed in the metrics.
    tissue_threshold / tissue_masks: tissue is ``tissue_mask(source, tissue_threshold)`` (default 0.02), or read
        from a folder of masks named like the images; not both.
    calibration: heatmap folders, heatmap files, or text files listing them (one per line), of images that are
        not test images: the Dice threshold is chosen there.
    image_score_quantile: image score of a heatmap = this quantile of its tissue pixels.
    aupro_max_pixels: above this many pixels in all, AUPRO evaluates every k-th row and column (k reported).
    pooled_max_pixels: above this many pixels in all, the pooled pixel AUROC/AP take every k-th pixel of each
        image (k reported); at or below it they are exact.
    peak_radius: non-maximum suppression radius of heatmap peaks. hit_min_distance: DBTex floor of the hit radius.
    lesion_size_bins: inner edges of the lesion size bins, px (diagonal) or px^2 (area).
    """

    heatmaps: str | None = None
    annotations: str | None = None
    out: str | None = None
    tissue_threshold: float | None = None
    tissue_masks: str | None = None
    calibration: str | tuple[str, ...] = ()
    image_score_quantile: float = 0.99
    aupro_fpr_limit: float = 0.3
    aupro_max_pixels: int = 50_000_000
    pooled_max_pixels: int = 50_000_000
    dice_candidates: int = 100
    peak_radius: float = 100.0
    hit_min_distance: float = 100.0
    fp_rates: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    lesion_size_measure: Literal["diagonal", "area"] = "diagonal"
    lesion_size_bins: tuple[float, ...] = (100.0, 200.0, 400.0)

    def __post_init__(self) -> None:
        if isinstance(self.calibration, str):
            object.__setattr__(self, "calibration", (self.calibration,))
        if self.tissue_masks is not None and self.tissue_threshold is not None:
            raise ConfigError("give tissue_threshold or tissue_masks, not both")
        if self.tissue_masks is None and self.tissue_threshold is None:
            object.__setattr__(self, "tissue_threshold", 0.02)
        checks = [
            (0.0 <= self.image_score_quantile <= 1.0, "image_score_quantile must be in [0, 1]"),
            (0.0 < self.aupro_fpr_limit <= 1.0, "aupro_fpr_limit must be in (0, 1]"),
            (self.aupro_max_pixels >= 1, "aupro_max_pixels must be at least 1"),
            (self.pooled_max_pixels >= 1, "pooled_max_pixels must be at least 1"),
            (self.dice_candidates >= 1, "dice_candidates must be at least 1"),
            (self.peak_radius >= 1, "peak_radius must be at least 1 pixel"),
            (self.hit_min_distance >= 0, "hit_min_distance must be non-negative"),
            (bool(self.fp_rates) and all(r >= 0 for r in self.fp_rates), "fp_rates must be non-negative numbers"),
            (list(self.lesion_size_bins) == sorted(set(self.lesion_size_bins)), "lesion_size_bins must ascend"),
            (all(edge > 0 for edge in self.lesion_size_bins), "lesion_size_bins must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
