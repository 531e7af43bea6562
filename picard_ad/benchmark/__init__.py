"""``picard-ad benchmark``: fit several methods on the normal training images of one dataset, score its test images
and compare them, with the trivial reference maps always beside them.

PICARD's ablations (its M sweep, then scores, dropout layers and dropout kind) rescore the test images with the one
trained PICARD, changing one setting at a time, and are evaluated like the methods.

The job is resumable: a fitted method is saved under ``OUT/methods/NAME`` (reused when its config is unchanged) and
every score map is cached under ``OUT/maps/NAME`` (a PICARD variant's under ``OUT/maps/picard-SETTING-VALUE``), so an
interrupted run recomputes nothing it finished.

Synthetic anomalies (``picard_ad.data.synthetic``) serve twice: ``data.synthetic_test`` adds abnormal test images made
from the normal ones (exact masks; a folder of normal scans can then be benchmarked), and ``data.synthetic_validation``
makes a validation set from normal training patients held out from fitting, on which each method's Dice threshold is
chosen without any labelled anomaly (Zimmerer's thesis §5); the test Dice at that threshold is reported beside the
optimistic Dice at the best test threshold.

Modules: ``config`` (the typed config), ``data`` (dataset and patient split), ``cache`` (fitted methods and score
maps under OUT), ``evaluate`` (metrics and the reference comparison), ``picard_variants`` (M sweep and ablations),
``results`` (typed results) and ``run`` (``run_benchmark``).
"""

from picard_ad.benchmark.cache import (
    fitted_method,
    map_file,
    score_map_sets,
    score_maps,
)
from picard_ad.benchmark.config import (
    ABLATION_SETTINGS,
    REFERENCE_METHODS,
    BenchmarkConfig,
    DataConfig,
    MethodEntry,
    PicardAblations,
)
from picard_ad.benchmark.data import BenchmarkSplit, is_synthetic, load_dataset, split_dataset
from picard_ad.benchmark.evaluate import evaluate_by_origin, evaluate_maps, flag_methods, validation_threshold
from picard_ad.benchmark.picard_variants import (
    picard_m_point,
    picard_variant,
    score_picard_ablations,
)
from picard_ad.benchmark.results import AblationResult, BenchmarkResult, MethodResult
from picard_ad.benchmark.run import run_benchmark

__all__ = [
    "ABLATION_SETTINGS",
    "REFERENCE_METHODS",
    "AblationResult",
    "BenchmarkConfig",
    "BenchmarkResult",
    "BenchmarkSplit",
    "DataConfig",
    "MethodEntry",
    "MethodResult",
    "PicardAblations",
    "evaluate_by_origin",
    "evaluate_maps",
    "fitted_method",
    "flag_methods",
    "is_synthetic",
    "load_dataset",
    "map_file",
    "picard_m_point",
    "picard_variant",
    "run_benchmark",
    "score_map_sets",
    "score_maps",
    "score_picard_ablations",
    "split_dataset",
    "validation_threshold",
]
