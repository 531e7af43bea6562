"""``run_benchmark``: the whole benchmark, from the configured dataset to its typed result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from picard_ad.benchmark.ablations import score_ablations
from picard_ad.benchmark.cache import (
    TIMINGS_FILE,
    MapScorer,
    PoolFactory,
    fitted_method,
    plain_json,
    score_maps,
)
from picard_ad.benchmark.config import BenchmarkConfig
from picard_ad.benchmark.data import data_warnings, is_synthetic, load_dataset, split_dataset
from picard_ad.benchmark.evaluate import HEADLINE, evaluate_by_origin, evaluate_maps, flag_methods
from picard_ad.benchmark.results import BenchmarkResult, MethodResult
from picard_ad.config import to_dict
from picard_ad.errors import ConfigError
from picard_ad.io.records import read_json_object
from picard_ad.io.writers import atomic_write_text, dumps_json

DATA_RECORD = "data.json"


def _claim_output(out_dir: Path, config: BenchmarkConfig) -> None:
    """Record which data and seed the fits and cached maps in ``out_dir`` come from; refuse a folder made from
    others. Cached maps are keyed by image name, and other data (another seed, size or synthetic set) reuses the
    names, so they would be read back stale."""
    record = plain_json({"data": to_dict(config.data), "seed": config.seed})
    path = out_dir / DATA_RECORD
    if path.is_file():
        if read_json_object(path) != record:
            raise ConfigError(
                f"{out_dir} holds a benchmark of other data or another seed (see {DATA_RECORD}); its fitted methods "
                "and cached score maps would be stale: use another --out, or delete it"
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, dumps_json(record, indent=2) + "\n")


def run_benchmark(
    config: BenchmarkConfig,
    out_dir: str | Path,
    progress: Callable[[str], None] | None = None,
    make_pool: PoolFactory | None = None,
) -> BenchmarkResult:
    """Fit, score and evaluate every method (listed ones, then the references), then the ablations. With
    ``data.synthetic_validation``, each method also scores the synthetic validation images and its Dice threshold
    is chosen on them.

    Writes only the fitted methods and cached maps under ``out_dir``; ``picard_ad.report.html.write_benchmark_report``
    writes the report.

    progress: called with a short line at each step (e.g. ``click.echo``); None is silent.
    make_pool: where the score maps are computed (a Ray pool per scorer, ``picard-ad benchmark --ray``); None:
        here, one image after another.
    """
    out_dir = Path(out_dir)
    say = progress or (lambda line: None)
    _claim_output(out_dir, config)
    warnings = data_warnings(config.data)
    for warning in warnings:
        say(f"warning: {warning}")
    split = split_dataset(load_dataset(config.data, config.seed), config.data, config.seed)
    train, test, validation = split.train, split.test, split.validation
    synthetic = [s.name for s in test if is_synthetic(s)]
    say(
        f"{len(train)} normal training images, {len(test)} test images ({sum(not s.is_normal for s in test)} abnormal"
        + (f", {len(synthetic)} of them synthetic)" if synthetic else ")")
        + (f", {len(validation)} synthetic validation images" if validation else "")
    )
    loaded = [sample.load() for sample in test]
    validation_loaded = [sample.load() for sample in validation]
    results, pooled, fitted = [], {}, {}
    for entry in config.all_methods():  # each entry fitted and cached under its label (default: the method's name)
        label = entry.label
        method_dir = out_dir / "methods" / label
        method, fit_seconds, reused = fitted_method(entry, train, method_dir)
        fitted[label] = method
        if not reused:  # maps cached from an earlier fit (its folder since removed) are stale
            ablated = [a.folder_name(value) for a in config.ablations if a.method == label for value in a.values]
            for maps_dir in [out_dir / "maps" / label, *(out_dir / "maps" / name for name in ablated)]:
                (maps_dir / TIMINGS_FILE).unlink(missing_ok=True)
        say(f"{label}: {'reused the saved fit' if reused else f'fitted in {fit_seconds:.1f} s'}")
        scorer = MapScorer(method_dir, to_dict(method.settings), method=method)
        maps, seconds, computed = score_maps(scorer, test, out_dir / "maps" / label, make_pool)
        say(f"{label}: {computed} score maps computed, {len(test) - computed} read from the cache")
        chosen_on = None
        if validation:  # their names differ from the test images' (other patients), so they share the cache folder
            validation_maps, _, computed_validation = score_maps(
                scorer, validation, out_dir / "maps" / label, make_pool
            )
            computed += computed_validation
            chosen_on = (validation, validation_loaded, validation_maps)
            say(
                f"{label}: {computed_validation} synthetic validation maps computed, "
                f"{len(validation) - computed_validation} read from the cache"
            )
        metrics, per_image, pooled[label] = evaluate_maps(method, loaded, test, maps, chosen_on)
        metrics.update(fit_seconds=fit_seconds, score_seconds_per_image=float(np.mean(seconds)))
        by_origin = evaluate_by_origin(method, loaded, test, maps, chosen_on)
        config_dict = plain_json({"train": to_dict(method.train_config), "settings": to_dict(method.settings)})
        results.append(MethodResult(label, config_dict, metrics, per_image, reused, computed,
                                    real_vs_synthetic=by_origin, method=entry.name))  # fmt: skip
    best = flag_methods(results)
    reference = next(result for result in results if result.name == best)
    ablations = score_ablations(config, out_dir, fitted, test, loaded, reference.metrics, make_pool)
    for row in ablations:
        say(
            f"{row.name}: {row.maps_computed} score maps computed, {len(test) - row.maps_computed} read from the "
            f"cache; tissue pixel AUROC {row.metrics[HEADLINE]:.3f}"
        )
    summary = {
        "kind": config.data.kind,
        "n_train": len(train),
        "n_test": len(test),
        "n_test_abnormal": sum(not s.is_normal for s in test),
        "n_test_normal": sum(s.is_normal for s in test),
        "n_test_synthetic": len(synthetic),
        "n_validation_synthetic": len(validation),
        "image_shapes": sorted({f"{s.image.shape[0]}x{s.image.shape[1]}" for s in loaded}),
        "train_patients": len({s.patient_id for s in train}),
        "test_patients": len({s.patient_id for s in test}),
        "test_images": [s.name for s in test],
        "synthetic_test_images": synthetic,
        "validation_images": [s.name for s in validation],
        "warnings": warnings,
    }
    return BenchmarkResult(config, summary, results, best, test, pooled, ablations)
