"""Exact against approximate nearest-neighbour search: how far the heatmaps and their pixel AUROC move.

    python -m picard_ad.methods.patchsvdd.search_comparison --out runs/patchsvdd-phantoms

Fits the "small" preset on normal phantoms (unless ``--out`` already holds the fit; about 5 minutes on 2 cores),
then scores abnormal phantoms once with the exact search and once with the faiss inverted file, and prints per
score the largest relative difference of the heatmaps, the fraction of windows whose score changed and the pooled
tissue pixel AUROC of each (lesion pixels against the other tissue pixels). ``compare_searches`` does the same for
any fitted PatchSVDD and samples.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from picard_ad.data.datasets import phantom_dataset
from picard_ad.data.phantoms import PhantomConfig
from picard_ad.data.samples import Sample
from picard_ad.methods.base import METHOD_FILE, create_method, load_method
from picard_ad.methods.patchsvdd.method import PatchSVDD
from picard_ad.metrics import roc_auc


@dataclass(frozen=True)
class ScoreComparison:
    """One score's heatmaps under both searches: max |approximate - exact| / exact over all pixels (exact > 0),
    the fraction of scored windows whose score differs, and pooled tissue pixel AUROC of each."""

    max_relative_difference: float
    changed_windows: float
    auroc_exact: float
    auroc_approximate: float


@dataclass(frozen=True)
class SearchComparison:
    """Exact against approximate search on ``n_images`` abnormal images, bank of ``bank_windows`` per scale."""

    n_images: int
    bank_windows: int
    ivf_lists: int
    ivf_probes: int
    seconds_exact: float
    seconds_approximate: float
    scores: dict[str, ScoreComparison]


def compare_searches(
    method: PatchSVDD, samples: Sequence[Sample], *, ivf_probes: int | None = None
) -> SearchComparison:
    """Heatmaps of the abnormal ``samples`` by ``method`` with its settings' search "exact" and "approximate"
    (``ivf_probes``: cells scanned, the settings' by default), compared per score."""
    loaded = [sample.load() for sample in samples if not sample.is_normal]
    heatmaps, seconds = {}, {}
    for search in ("exact", "approximate"):
        changes = {"search": search, **({"ivf_probes": ivf_probes} if ivf_probes else {})}
        variant = load_method(method.run_dir, **{**dataclasses.asdict(method.settings), **changes})
        variant.heatmaps(loaded[0].image, variant.score_names)  # builds the index and sizes the batches
        started = time.perf_counter()
        heatmaps[search] = [variant.heatmaps(sample.image, variant.score_names) for sample in loaded]
        seconds[search] = round(time.perf_counter() - started, 3)
    labels = np.concatenate([sample.lesion_mask[sample.tissue_mask] for sample in loaded])
    comparisons = {}
    for score in method.score_names:
        exact = [maps[score] for maps in heatmaps["exact"]]
        approximate = [maps[score] for maps in heatmaps["approximate"]]
        relative = max(
            float(np.max(np.abs(a.array - e.array)[e.array > 0] / e.array[e.array > 0]))
            for a, e in zip(approximate, exact)
        )
        scored = sum(int((~e.skipped).sum()) for e in exact)
        changed = sum(int((a.window_scores != e.window_scores)[~e.skipped].sum()) for a, e in zip(approximate, exact))
        aurocs = [
            roc_auc(labels, np.concatenate([m.array[s.tissue_mask] for m, s in zip(maps, loaded)]))
            for maps in (exact, approximate)
        ]
        comparisons[score] = ScoreComparison(relative, changed / max(scored, 1), *aurocs)
    index = variant.index("window")
    return SearchComparison(len(loaded), len(method.bank), index.n_lists, index.n_probes, seconds["exact"],
                            seconds["approximate"], comparisons)  # fmt: skip


def phantom_benchmark(
    out: Path,
    *,
    n_normal: int = 32,
    n_abnormal: int = 6,
    size: tuple[int, int] = (512, 384),
    seed: int = 0,
    preset: str = "small",
    steps: int | None = None,
    ivf_probes: int | None = None,
    progress: bool = True,
) -> SearchComparison:
    """Fit ``preset`` on ``n_normal`` phantoms into ``out`` (reused when it holds a fit), then
    ``compare_searches`` on ``n_abnormal`` phantoms of the same generator (``size`` (H, W) px; the default
    breast, so 0.5 mm pixels at 512 x 384)."""
    samples = phantom_dataset(n_normal, n_abnormal, PhantomConfig().resized(size), seed=seed)
    if not (out / METHOD_FILE).is_file():
        train = {} if steps is None else {"steps": steps}
        normals = [sample for sample in samples if sample.is_normal]
        create_method("patchsvdd", preset=preset, train=train).fit(normals, run_dir=out, progress=progress)
    return compare_searches(load_method(out), samples, ivf_probes=ivf_probes)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="run folder of the small-preset fit (reused)")
    parser.add_argument("--normal", type=int, default=32)
    parser.add_argument("--abnormal", type=int, default=6)
    parser.add_argument("--steps", type=int, default=None, help="training iterations [the preset's]")
    parser.add_argument("--ivf-probes", type=int, default=None, help="cells scanned per window [the settings']")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = phantom_benchmark(args.out, n_normal=args.normal, n_abnormal=args.abnormal, seed=args.seed,
                               steps=args.steps, ivf_probes=args.ivf_probes)  # fmt: skip
    print(json.dumps(dataclasses.asdict(result), indent=1))


if __name__ == "__main__":
    main()
