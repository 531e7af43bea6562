"""Metrics of a method's score maps on the test split (real and synthetic anomalies also apart), the Dice threshold
chosen on the synthetic validation set, and the comparison with the best trivial reference."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from picard_ad.benchmark.config import REFERENCE_METHODS
from picard_ad.benchmark.data import is_synthetic
from picard_ad.benchmark.results import MethodResult
from picard_ad.data.samples import LoadedSample, Sample
from picard_ad.methods import AnomalyMethod
from picard_ad.metrics import (
    ThresholdCalibration,
    average_precision,
    best_dice,
    calibrate_threshold,
    dice_at_threshold,
    image_level_metrics,
    pixel_metrics,
    roc_auc,
    summarize,
)

DICE_THRESHOLDS = 1000
"""Candidate Dice thresholds: quantiles of the pooled map pixels 0.1 % apart, as anomalies often cover a few %."""


def validation_threshold(
    maps: Sequence[np.ndarray], loaded: Sequence[LoadedSample], validation: Sequence[Sample]
) -> ThresholdCalibration:
    """The threshold (map units) maximising mean Dice on the synthetic validation images, from their score maps
    (H, W) and exact anomaly masks; no test image takes part (thesis §5: no labelled anomaly tunes it)."""
    masks = [sample.lesion_mask for sample in loaded]
    return calibrate_threshold(maps, masks, [sample.name for sample in validation], n_candidates=DICE_THRESHOLDS)


def evaluate_maps(
    method: AnomalyMethod,
    loaded: Sequence[LoadedSample],
    test: Sequence[Sample],
    maps: Sequence[np.ndarray],
    threshold: ThresholdCalibration | None = None,
) -> tuple[dict[str, Any], list[tuple[str, float]], tuple[np.ndarray, np.ndarray]]:
    """(metrics, per-image tissue pixel AUROC of abnormal images, pooled (labels, scores) of tissue pixels).

    Dice is the mean over the abnormal test images of ``map >= threshold`` over the whole image, at the
    ``threshold`` chosen on the synthetic validation set (``validation_threshold``; None: no such Dice) and at the
    threshold best on these test images themselves (``best_dice``: an optimistic upper bound).
    """
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
    abnormal = [index for index, sample in enumerate(test) if not sample.is_normal]
    heatmaps = [maps[index] for index in abnormal]
    masks = [loaded[index].lesion_mask for index in abnormal]
    names = [test[index].name for index in abnormal]
    best = best_dice(heatmaps, masks, names, n_candidates=DICE_THRESHOLDS)
    metrics.update(
        dice_at_validation_threshold=None,
        dice_at_best_threshold=best.mean_dice,
        validation_threshold=None,
        validation_dice=None,
        best_threshold=best.threshold,
    )
    if threshold is not None:
        metrics.update(
            dice_at_validation_threshold=dice_at_threshold(threshold, heatmaps, masks, names).mean_dice,
            validation_threshold=threshold.threshold,
            validation_dice=threshold.mean_dice,
        )
    ranked = [(m.name, m.pixel_auroc) for m in per_image]
    return metrics, ranked, (whole_labels[tissue], whole_scores[tissue])


def evaluate_by_origin(
    method: AnomalyMethod,
    loaded: Sequence[LoadedSample],
    test: Sequence[Sample],
    maps: Sequence[np.ndarray],
    threshold: ThresholdCalibration | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics (as ``evaluate_maps``) of the real and of the synthetic abnormal test images apart, each pooled with
    the normal test images, so "real" is what the benchmark reports without synthetic_test; empty unless the test
    split holds both."""
    synthetic = [is_synthetic(sample) for sample in test]
    groups = {
        "real": [index for index, flag in enumerate(synthetic) if not flag],
        "synthetic": [index for index, sample in enumerate(test) if sample.is_normal or synthetic[index]],
    }
    if not all(any(not test[index].is_normal for index in group) for group in groups.values()):
        return {}
    return {
        origin: evaluate_maps(
            method, [loaded[i] for i in group], [test[i] for i in group], [maps[i] for i in group], threshold
        )[0]
        for origin, group in groups.items()
    }


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
