"""``picard-ad benchmark``: fit several methods on the normal training images of one dataset, score its test images
and compare them, with the trivial reference maps always beside them.

Ablations rescore the test images with a fitted method, changing one of its settings at a time (PICARD's M sweep,
scores, dropout layers and kind; any method's settings the same way), and are evaluated like the methods.

The job is resumable: a fitted method is saved under ``OUT/methods/NAME`` (reused when its config is unchanged) and
every score map is cached under ``OUT/maps/NAME`` (an ablation variant's under ``OUT/maps/NAME-SETTING-VALUE``), so
an interrupted run recomputes nothing it finished.

Synthetic anomalies (``picard_ad.data.synthetic``) serve twice: ``data.synthetic_test`` adds abnormal test images made
from the normal ones (exact masks; a folder of normal scans can then be benchmarked), and ``data.synthetic_validation``
makes a validation set from normal training patients held out from fitting, on which each method's Dice threshold is
chosen without any labelled anomaly (Zimmerer's thesis §5); the test Dice at that threshold is reported beside the
optimistic Dice at the best test threshold.

Modules: ``config`` (the typed config), ``data`` (dataset and patient split), ``cache`` (fitted methods and score
maps under OUT), ``evaluate`` (metrics and the reference comparison),
``results`` (typed results), ``ablations`` (one setting changed at a time) and ``run`` (``run_benchmark``).
"""

from picard_ad.benchmark.ablations import score_ablations
from picard_ad.benchmark.cache import (
    fitted_method,
    map_file,
    score_map_sets,
    score_maps,
)
from picard_ad.benchmark.config import (
    REFERENCE_METHODS,
    Ablation,
    BenchmarkConfig,
    DataConfig,
    MethodEntry,
)
from picard_ad.benchmark.data import BenchmarkSplit, is_synthetic, load_dataset, split_dataset
from picard_ad.benchmark.evaluate import HEADLINE, evaluate_by_origin, evaluate_maps, flag_methods
from picard_ad.benchmark.results import AblationResult, BenchmarkResult, MethodResult
from picard_ad.benchmark.run import run_benchmark

__all__ = [
    "HEADLINE",
    "REFERENCE_METHODS",
    "Ablation",
    "AblationResult",
    "BenchmarkConfig",
    "BenchmarkResult",
    "BenchmarkSplit",
    "DataConfig",
    "MethodEntry",
    "MethodResult",
    "evaluate_by_origin",
    "evaluate_maps",
    "fitted_method",
    "flag_methods",
    "is_synthetic",
    "load_dataset",
    "map_file",
    "run_benchmark",
    "score_ablations",
    "score_map_sets",
    "score_maps",
    "split_dataset",
]
