"""Metrics of a method's score maps on the test split, with the code of ``picard-ad evaluate``
(``picard_ad.evaluation.evaluate_images``): pooled and per-image pixel AUROC/AP over the whole image and over
tissue, AUPRO, lesion-level sensitivity, image-level AUROC/AP from the method's image score, and Dice at a
threshold chosen on the synthetic validation maps (no labelled anomaly) beside the optimistic best-threshold Dice.
Real and synthetic anomalies are also evaluated apart, and every method is compared with the best trivial
reference."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from picard_ad.benchmark.data import is_synthetic
from picard_ad.benchmark.results import MethodResult
from picard_ad.data.samples import LoadedSample, Sample
from picard_ad.evaluation import ArrayImages, EvaluationConfig, evaluate_images
from picard_ad.methods import AnomalyMethod, create_method
from picard_ad.metrics.confounds import mean_rank_correlation

HEADLINE = "tissue_pixel_auroc_pooled"
"""The metric a method must beat the references on: pixel AUROC over the pooled tissue pixels of the test images."""

EVALUATION = EvaluationConfig(dice_candidates=1000)
"""How the benchmark evaluates: the defaults of ``picard-ad evaluate``, with Dice threshold candidates 0.1 % apart
(anomalies often cover a few % of an image)."""


def _source(samples: Sequence[Sample], loaded: Sequence[LoadedSample], maps: Sequence[np.ndarray]) -> ArrayImages:
    return ArrayImages(
        names=[sample.name for sample in samples],
        heatmaps=list(maps),
        lesion_masks=[item.lesion_mask for item in loaded],
        tissue_masks=[item.tissue_mask for item in loaded],
    )


def evaluate_maps(
    method: AnomalyMethod,
    loaded: Sequence[LoadedSample],
    test: Sequence[Sample],
    maps: Sequence[np.ndarray],
    validation: tuple[Sequence[Sample], Sequence[LoadedSample], Sequence[np.ndarray]] | None = None,
) -> tuple[dict[str, Any], list[tuple[str, float]], tuple[np.ndarray, np.ndarray]]:
    """(metrics, per-image tissue pixel AUROC of abnormal images, pooled (labels, scores) of tissue pixels).

    metrics: those of ``picard-ad evaluate`` (``picard_ad.evaluation``). validation: the synthetic validation
    images (samples, loaded arrays, this method's maps) on which the Dice threshold is chosen; None: no Dice at a
    chosen threshold.
    """
    scores = [method.image_score(item.image, heatmap, item.tissue_mask, sample.origin)
              for heatmap, item, sample in zip(maps, loaded, test)]  # fmt: skip
    calibration = None if validation is None else _source(*validation)
    evaluation = evaluate_images(_source(test, loaded, maps), EVALUATION, calibration=calibration,
                                 image_scores=scores, keep_pooled_tissue=True)  # fmt: skip
    ranked = [(row["name"], row["tissue_pixel_auroc"]) for row in evaluation.rows if row["abnormal"]]
    pooled = evaluation.pooled_tissue
    metrics = {**evaluation.metrics, "brightness_rank_correlation": brightness_rank_correlation(maps, loaded)}
    return metrics, ranked, (pooled.labels, pooled.scores)


def brightness_rank_correlation(maps: Sequence[np.ndarray], loaded: Sequence[LoadedSample]) -> float:
    """Mean over the test images of Spearman's rho between each map and the brightness reference's (default
    settings) over tissue outside lesions: how much of a method's ranking of normal tissue is brightness."""
    brightness = create_method("brightness")
    references = [brightness.score_map(item.image) for item in loaded]
    normal_tissue = [item.tissue_mask & ~item.lesion_mask for item in loaded]
    return mean_rank_correlation(maps, references, normal_tissue)


def evaluate_by_origin(
    method: AnomalyMethod,
    loaded: Sequence[LoadedSample],
    test: Sequence[Sample],
    maps: Sequence[np.ndarray],
    validation: tuple[Sequence[Sample], Sequence[LoadedSample], Sequence[np.ndarray]] | None = None,
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
            method, [loaded[i] for i in group], [test[i] for i in group], [maps[i] for i in group], validation
        )[0]
        for origin, group in groups.items()
    }


def flag_methods(results: Sequence[MethodResult]) -> str:
    """Set ``beats_references`` of every non-reference method; returns the best reference's name.

    A method beats the references when its pooled tissue pixel AUROC is above the best reference's (NaN or None
    counts as the lowest value).
    """
    references = [r for r in results if r.is_reference]
    if not references:
        raise ValueError("flag_methods needs the results of the reference methods")
    best = max(references, key=lambda r: _or_minus_inf(r.metrics[HEADLINE]))
    for result in results:
        if not result.is_reference:
            result.beats_references = beats_reference(result.metrics, best.metrics)
    return best.name


def beats_reference(metrics: dict[str, Any], reference_metrics: dict[str, Any]) -> bool:
    """Whether ``metrics`` has a higher pooled tissue pixel AUROC than ``reference_metrics`` (NaN or None lowest)."""
    return _or_minus_inf(metrics[HEADLINE]) > _or_minus_inf(reference_metrics[HEADLINE])


def _or_minus_inf(value: float | None) -> float:
    return -math.inf if value is None or math.isnan(value) else value
