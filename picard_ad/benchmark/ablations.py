"""Ablations: a fitted method rescoring the test images with one setting changed, its maps cached beside the
methods' (``OUT/maps/LABEL-SETTING-VALUE``; a value equal to the method's own setting reuses ``OUT/maps/LABEL``),
LABEL being the method entry's label (its name unless the entry sets one)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from picard_ad.benchmark.cache import MapScorer, PoolFactory, score_map_sets, score_maps
from picard_ad.benchmark.config import Ablation, BenchmarkConfig
from picard_ad.benchmark.evaluate import beats_reference, evaluate_maps
from picard_ad.benchmark.results import AblationResult
from picard_ad.config import to_dict
from picard_ad.data.samples import LoadedSample, Sample
from picard_ad.methods import AnomalyMethod, load_method


def ablation_folder(out_dir: Path, ablation: Ablation, method: AnomalyMethod, value: Any) -> Path:
    """The cache folder of one variant: the method's own maps when ``value`` is its setting."""
    own = to_dict(method.settings)[ablation.setting] == to_dict(ablation.variant_settings(method, value))[
        ablation.setting
    ]
    return out_dir / "maps" / (ablation.method if own else ablation.folder_name(value))


def score_ablations(
    config: BenchmarkConfig,
    out_dir: Path,
    fitted: dict[str, AnomalyMethod],
    test: Sequence[Sample],
    loaded: Sequence[LoadedSample],
    reference_metrics: dict[str, Any],
    make_pool: PoolFactory | None = None,
) -> list[AblationResult]:
    """Score, evaluate and flag every variant of ``config.ablations``.

    fitted: the fitted methods by entry label (saved under ``out_dir/methods/LABEL``); reference_metrics: the best
    reference's metrics; make_pool: where maps are computed (``score_map_sets``).
    """
    rows = []
    for ablation in config.ablations:
        method = fitted[ablation.method]
        values = {ablation.label(value): value for value in ablation.values}
        folders = {label: ablation_folder(out_dir, ablation, method, value) for label, value in values.items()}
        # each variant's own image score (e.g. a top-k mean for score: mse-top-k), not the fitted method's
        variants = {label: load_method(out_dir / "methods" / ablation.method, **{ablation.setting: value})
                    for label, value in values.items()}  # fmt: skip
        run_dir = out_dir / "methods" / ablation.method
        if ablation.setting == "score":  # all scores from one pass over each image
            scorer = MapScorer(run_dir, to_dict(method.settings), scores=values, method=method)
            maps, seconds, computed = score_map_sets(scorer, test, folders, make_pool)
            results = {label: (maps[label], seconds[label], computed[label]) for label in values}
        else:
            results = {label: score_maps(MapScorer(run_dir, to_dict(variant.settings), method=variant), test,
                                         folders[label], make_pool)
                       for label, variant in variants.items()}  # fmt: skip
        for label, (maps, seconds, computed) in results.items():
            metrics, per_image, _ = evaluate_maps(variants[label], loaded, test, maps)  # no validation maps here
            metrics["score_seconds_per_image"] = float(np.mean(seconds))
            beats = beats_reference(metrics, reference_metrics)
            rows.append(AblationResult(ablation.method, ablation.setting, label, metrics, per_image, computed, beats))
    return rows
