"""PICARD's M sweep and ablations: the benchmark's one trained PICARD rescoring the test images with one setting
changed, its maps cached beside the methods' (``OUT/maps/picard-M{M}``, ``OUT/maps/picard-SETTING-VALUE``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from picard_ad.benchmark.cache import score_map_sets, score_maps
from picard_ad.benchmark.config import BenchmarkConfig
from picard_ad.benchmark.evaluate import beats_reference, evaluate_maps
from picard_ad.benchmark.results import AblationResult
from picard_ad.data.samples import LoadedSample, Sample
from picard_ad.methods import AnomalyMethod
from picard_ad.methods.picard import Picard
from picard_ad.metrics import roc_auc


def picard_m_point(
    config: BenchmarkConfig, out_dir: Path, n_completions: int, test: Sequence[Sample], loaded: Sequence[LoadedSample]
) -> dict[str, Any]:
    """Pooled pixel AUROC of the fitted PICARD (``out_dir/methods/picard``) scoring with M = ``n_completions``."""
    settings = config.picard_settings()
    picard = picard_variant(config, out_dir, n_completions=n_completions)
    # the benchmark's own M already has its maps
    folder = "picard" if n_completions == settings.n_completions else f"picard-M{n_completions}"
    maps, seconds, _ = score_maps(lambda image: picard.heatmap(image).array, test, out_dir / "maps" / folder)
    scores = np.concatenate([m.ravel() for m in maps])
    labels = np.concatenate([s.lesion_mask.ravel() for s in loaded])
    tissue = np.concatenate([s.tissue_mask.ravel() for s in loaded])
    return {
        "n_completions": n_completions,
        "pixel_auroc": roc_auc(labels, scores),
        "tissue_pixel_auroc": roc_auc(labels[tissue], scores[tissue]),
        "score_seconds_per_image": float(np.mean(seconds)),
    }


def picard_variant(config: BenchmarkConfig, out_dir: Path, **overrides: Any) -> Picard:
    """The fitted PICARD of the benchmark (``out_dir/methods/picard``) with its settings, ``overrides`` replacing
    some (``PicardSettings`` fields)."""
    return Picard.load(out_dir / "methods" / "picard" / "checkpoint", config.picard_settings(), **overrides)


def score_picard_ablations(
    config: BenchmarkConfig,
    out_dir: Path,
    method: AnomalyMethod,
    test: Sequence[Sample],
    loaded: Sequence[LoadedSample],
    reference_metrics: dict[str, Any],
) -> list[AblationResult]:
    """Score, evaluate and flag every variant of ``config.picard_ablations`` with the fitted PICARD.

    method: the fitted 'picard' method (its image score is used); reference_metrics: the best reference's metrics.
    A variant's maps are cached in ``out_dir/maps/picard-SETTING-VALUE``, or are the benchmark's own PICARD maps
    (``out_dir/maps/picard``) when the value is its setting.
    """
    settings = config.picard_settings()
    rows = []

    def folder(setting: str, value: str) -> Path:
        return out_dir / "maps" / ("picard" if getattr(settings, setting) == value else f"picard-{setting}-{value}")

    def evaluate(setting: str, value: str, maps: list[np.ndarray], seconds: list[float], computed: int) -> None:
        metrics, per_image, _ = evaluate_maps(method, loaded, test, maps)
        metrics["score_seconds_per_image"] = float(np.mean(seconds))
        rows.append(
            AblationResult(setting, value, metrics, per_image, computed, beats_reference(metrics, reference_metrics))
        )

    scores = config.picard_ablations.scores
    if scores:
        picard = picard_variant(config, out_dir)
        maps, seconds, computed = score_map_sets(
            lambda image, names: {name: heatmap.array for name, heatmap in picard.heatmaps(image, names).items()},
            test,
            {name: folder("score", name) for name in scores},
        )
        for name in scores:
            evaluate("score", name, maps[name], seconds[name], computed[name])
    for setting, value in config.picard_ablations.variants():
        if setting != "score":
            variant = picard_variant(config, out_dir, **{setting: value})
            evaluate(
                setting,
                value,
                *score_maps(lambda image, picard=variant: picard.heatmap(image).array, test, folder(setting, value)),
            )
    return rows
