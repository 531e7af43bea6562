"""Metrics of a method's score maps on the test split, and the comparison with the best trivial reference."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from picard_ad.benchmark.config import REFERENCE_METHODS
from picard_ad.benchmark.results import MethodResult
from picard_ad.data.samples import LoadedSample, Sample
from picard_ad.methods import AnomalyMethod
from picard_ad.metrics import (
    average_precision,
    image_level_metrics,
    pixel_metrics,
    roc_auc,
    summarize,
)


def evaluate_maps(
    method: AnomalyMethod, loaded: Sequence[LoadedSample], test: Sequence[Sample], maps: Sequence[np.ndarray]
) -> tuple[dict[str, Any], list[tuple[str, float]], tuple[np.ndarray, np.ndarray]]:
    """(metrics, per-image tissue pixel AUROC of abnormal images, pooled (labels, scores) of tissue pixels)."""
    whole_scores = np.concatenate([m.ravel() for m in maps])
    whole_labels = np.concatenate([s.lesion_mask.ravel() for s in loaded])
    tissue = np.concatenate([s.tissue_mask.ravel() for s in loaded])
    per_image = [
        pixel_metrics(m, s.lesion_mask, s.tissue_mask, sample.name)
        for m, s, sample in zip(maps, loaded, test)
        if not sample.is_normal
    ]
    summary = summarize(per_image)
    metrics: dict[str, Any] = {
        "pixel_auroc": roc_auc(whole_labels, whole_scores),
        "pixel_ap": average_precision(whole_labels, whole_scores),
        "tissue_pixel_auroc": roc_auc(whole_labels[tissue], whole_scores[tissue]),
        "tissue_pixel_ap": average_precision(whole_labels[tissue], whole_scores[tissue]),
        "tissue_pixel_auroc_mean_per_image": summary.mean_pixel_auroc,
        "tissue_pixel_ap_mean_per_image": summary.mean_pixel_ap,
        "image_auroc": None,
        "image_ap": None,
    }
    if any(sample.is_normal for sample in test):
        scores = [method.image_score(s.image, m, s.tissue_mask) for m, s in zip(maps, loaded)]
        image = image_level_metrics(np.array(scores), np.array([not sample.is_normal for sample in test]))
        metrics.update(image_auroc=image["image_auroc"], image_ap=image["image_ap"])
    ranked = [(m.name, m.pixel_auroc) for m in per_image]
    return metrics, ranked, (whole_labels[tissue], whole_scores[tissue])


def flag_methods(results: Sequence[MethodResult]) -> str:
    """Set ``beats_references`` of every non-reference method; returns the best reference's name.

    A method beats the references when its pooled tissue pixel AUROC is above the best reference's (NaN or None
    counts as the lowest value).
    """
    references = [r for r in results if r.name in REFERENCE_METHODS]
    if not references:
        raise ValueError("flag_methods needs the results of the reference methods")
    best = max(references, key=lambda r: _or_minus_inf(r.metrics["tissue_pixel_auroc"]))
    for result in results:
        if result.name not in REFERENCE_METHODS:
            result.beats_references = beats_reference(result.metrics, best.metrics)
    return best.name


def beats_reference(metrics: dict[str, Any], reference_metrics: dict[str, Any]) -> bool:
    """Whether ``metrics`` has a higher pooled tissue pixel AUROC than ``reference_metrics`` (NaN or None lowest)."""
    return _or_minus_inf(metrics["tissue_pixel_auroc"]) > _or_minus_inf(reference_metrics["tissue_pixel_auroc"])


def _or_minus_inf(value: float | None) -> float:
    return -math.inf if value is None or math.isnan(value) else value
