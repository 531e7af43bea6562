"""Time picard_ad's exact ROC AUC and average precision against scikit-learn on one large heatmap's pixels.

Run: python benchmarks/bench_metrics.py [--n-pixels 5000000] [--repeats 3]
Scores are random with about 2% positive pixels: heavily tied (rounded to 1/1000) and continuous (all distinct,
the worst case for the per-threshold work), each in float64 and float32.
Both libraries are timed the same way: the best wall time of --repeats calls each, so neither side's timing
includes one-off costs (first-call imports, cold caches) that the other is spared.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from picard_ad.metrics import average_precision, roc_auc


def _best_time(function, labels, scores, repeats: int) -> tuple[float, float]:
    """(best wall time in seconds over repeats, value of the last call)."""
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = function(labels, scores)
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pixels", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    labels = rng.random(args.n_pixels) < 0.02
    continuous = rng.random(args.n_pixels) + 0.1 * labels
    print(f"{args.n_pixels} pixels, {labels.mean():.2%} positive")
    print(f"{'metric':<18}{'scores':<11}{'dtype':<9}{'picard_ad s':>12}{'sklearn s':>11}{'speed-up':>10}{'|diff|':>10}")
    largest_difference = 0.0
    for kind, dtype in itertools.product(("tied", "continuous"), (np.float64, np.float32)):
        scores = (np.round(continuous, 3) if kind == "tied" else continuous).astype(dtype)
        for name, ours, theirs in (
            ("roc_auc", roc_auc, roc_auc_score),
            ("average_precision", average_precision, average_precision_score),
        ):
            our_time, our_value = _best_time(ours, labels, scores, args.repeats)
            their_time, their_value = _best_time(theirs, labels, scores, args.repeats)
            difference = abs(our_value - their_value)
            largest_difference = max(largest_difference, difference)
            print(
                f"{name:<18}{kind:<11}{np.dtype(dtype).name:<9}{our_time:>12.3f}{their_time:>11.3f}"
                f"{their_time / our_time:>9.1f}x{difference:>10.1e}"
            )
    print(f"max abs difference vs scikit-learn: {largest_difference:.2e}")


if __name__ == "__main__":
    main()
