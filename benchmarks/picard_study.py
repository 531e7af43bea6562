"""The study of issue 17 (docs/picard-study.md): which PICARD score localizes best on real tissue, and does any beat
the trivial references?

    python benchmarks/picard_study.py --brats ../shared/data/brats2015 --out runs/picard-study \\
        [--phantoms-config configs/bench-phantoms.yaml] [--steps 1200] [--max-completions 30]

Data sets, each with patient-level folds so nothing is tuned and judged on the same patient:
- BraTS FLAIR and BraTS T1c: leave one patient out; PICARD (small preset, ``--steps`` iterations) trains on the
  tumour-free slices of the other patients and is tested on ``--test-slices`` evenly spaced slices of the held-out
  one (tumour and tumour-free), with its brain mask as tissue.
- synthetic: ``--synthetic`` MOOD-style synthetic anomalies (``picard_ad.data.synthetic``) inserted into the held-out
  patient's tumour-free slices, scored by the same fold models (FLAIR and T1c pooled).
- phantoms: the split of ``--phantoms-config`` (one model).

Each model scores its test windows once with M = ``--max-completions`` dropout completions (image and critic-feature
distances; completion j of a window has the same dropout mask for any M, so the first m columns are an M = m run) and
once with its best checkpoint at M = 10; every candidate score is a reduction of these distances, assembled into a
heatmap as ``picard-ad heatmap`` does. The calibrated candidates z-score a window's raw score within its context bin
(``picard_ad.methods.picard.calibration``), fitted on ``--calibration-slices`` normal training slices of the fold's
own training patients: no abnormal pixel and no test patient is involved.

Every stage is cached under ``--out`` (models, per-slice window distances), so a rerun recomputes nothing finished.
Prints the tables of docs/picard-study.md and writes them to ``OUT/study.json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from picard_ad.benchmark.cache import FIT_RECORD, fitted_method
from picard_ad.benchmark.config import BenchmarkConfig, DataConfig, MethodEntry
from picard_ad.benchmark.data import load_dataset, split_dataset, synthetic_samples
from picard_ad.config import from_dict
from picard_ad.data.samples import LoadedSample, Sample
from picard_ad.data.synthetic import ANOMALY_KINDS
from picard_ad.io.writers import atomic_write_text, dumps_json
from picard_ad.localize import WindowGrid, extract_windows, scored_windows
from picard_ad.localize.assembly import assemble_heatmap
from picard_ad.methods import create_method, load_method
from picard_ad.methods.base import METHOD_FILE
from picard_ad.methods.picard.calibration import ContextCalibration, window_context
from picard_ad.methods.picard.scores import reduce_distances
from picard_ad.metrics.confounds import rank_correlation
from picard_ad.metrics.ranking import average_precision, roc_auc

MODALITIES = {"flair": "*/Flair*.nii.gz", "t1c": "*/T1c*.nii.gz"}
REDUCTIONS = ("mcd", "mean", "median", "quantile", "softmin")
SPACES = ("image", "feature")
SCORING = {"patch_size": 64, "mask_size": 32, "stride": 16}
FIT_SETTINGS = {"score": "mcd-image"}  # the default when the study's models were fitted (their reuse checks it)
BEST_CHECKPOINT_M = 10  # also the M of the dropout factors
DROPOUT_PASSES = (("p25", "p=0.25"), ("p75", "p=0.75"), ("paper-layers", "paper layers"))
DROPOUT_SETTINGS = ({"dropout_p": 0.25}, {"dropout_p": 0.75}, {"dropout_layers": "paper"})
DATASETS = ("brats-flair", "brats-t1c", "synthetic", "phantoms")
REFERENCES = ("brightness", "local-contrast")


@dataclass
class Fold:
    """One model and what it scores: test slices (real and synthetic anomalies) and normal calibration slices."""

    name: str
    model_dir: Path
    entry: MethodEntry
    train: list[Sample]
    tests: dict[str, list[Sample]]  # data set -> test samples
    calibration: list[Sample]


def evenly(samples: Sequence[Sample], n: int) -> list[Sample]:
    if len(samples) <= n:
        return list(samples)
    return [samples[int(i)] for i in np.linspace(0, len(samples) - 1, n).round().astype(int)]


def brats_folds(args: argparse.Namespace) -> list[Fold]:
    folds = []
    for modality, pattern in MODALITIES.items():
        data = DataConfig(kind="nifti-labels", root=args.brats, image_glob=pattern, label_glob="*/OT*.nii.gz",
                          brain_mask_glob="*/brainmask.nii.gz", max_test_images=args.test_slices)  # fmt: skip
        samples = load_dataset(data, args.seed)
        for patient in sorted({s.patient_id for s in samples}):
            fold_data = DataConfig(**{**vars(data), "test_patients": (patient,)})
            split = split_dataset(samples, fold_data, args.seed)
            bases = [s for s in samples if s.patient_id == patient and s.is_normal]
            synthetic = synthetic_samples(bases, args.synthetic, ANOMALY_KINDS, args.seed, "synthetic")
            entry = MethodEntry("picard", "small", {"steps": args.steps}, {**SCORING, **FIT_SETTINGS})
            folds.append(Fold(f"{modality}/{patient}", args.out / modality / patient, entry, split.train,
                              {f"brats-{modality}": split.test, "synthetic": synthetic},
                              evenly(split.train, args.calibration_slices)))  # fmt: skip
    return folds


def phantom_fold(args: argparse.Namespace) -> Fold:
    raw = yaml.safe_load(args.phantoms_config.read_text())
    config = from_dict(BenchmarkConfig, raw, where=str(args.phantoms_config))
    split = split_dataset(load_dataset(config.data, config.seed), config.data, config.seed)
    picard = next(entry for entry in config.methods if entry.name == "picard")
    entry = MethodEntry("picard", picard.preset, picard.train, {**picard.settings, **FIT_SETTINGS})  # its own fit
    return Fold("phantoms", args.out / "phantoms", entry, split.train, {"phantoms": split.test},
                evenly(split.train, args.calibration_slices))  # fmt: skip


def windows_of(method, image: np.ndarray) -> tuple[WindowGrid, np.ndarray, np.ndarray]:
    """The window grid, scored window indices and windows of ``image``, as ``picard-ad heatmap`` chooses them."""
    settings = method.settings
    grid, keep = scored_windows(image, method.patch_size, method.mask_size, settings.stride,
                                settings.tissue_threshold, settings.min_tissue_fraction)  # fmt: skip
    indices = np.flatnonzero(keep.ravel())
    return grid, indices, extract_windows(image, grid, indices)


def distances_file(fold: Fold, sample: Sample) -> Path:
    return fold.model_dir / "distances" / (sample.name.replace("/", "__") + ".npz")


def window_distances(fold: Fold, methods: dict, sample: Sample, image: np.ndarray) -> dict[str, np.ndarray]:
    """Cached per-window record: indices, context (K, 2), and (K, M) distances per pass and space."""
    path = distances_file(fold, sample)
    record = dict(np.load(path)) if path.is_file() else {}
    missing = [name for name in methods if f"{name}-image" not in record]
    if not missing:
        return record
    _, indices, windows = windows_of(methods["last"], image)
    record.update(indices=indices, context=window_context(windows, methods["last"].mask_size))
    for name in missing:
        for space, values in methods[name].engine.completion_distances(windows, indices, SPACES).items():
            record[f"{name}-{space}"] = values
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.with_suffix(".tmp.npz"), **record)
    path.with_suffix(".tmp.npz").replace(path)
    return record


def longer_pass(factor: int) -> tuple[str, str]:
    """(record name, candidate suffix) of the pass scored by the model trained ``factor`` times as long."""
    return f"x{factor}", f"{factor}x iterations"


def window_variants(record: dict[str, np.ndarray], max_m: int, passes: dict[str, str]) -> dict[str, np.ndarray]:
    """Raw window scores of every candidate: name -> (K,); ``passes``: the M = 10 passes' names -> suffixes."""
    variants = {}
    for space in SPACES:
        last = record[f"last-{space}"]
        for m in sorted({m for m in (1, 3, 10) if m < max_m} | {max_m}):
            for reduction in ("mcd",) if m == 1 else REDUCTIONS:
                scores = reduce_distances(torch.from_numpy(last[:, :m]), reduction).numpy()
                variants[f"{reduction}-{space} M={m}"] = scores
        for name, suffix in passes.items():
            for reduction in REDUCTIONS:
                scores = reduce_distances(torch.from_numpy(record[f"{name}-{space}"]), reduction).numpy()
                variants[f"{reduction}-{space} M={BEST_CHECKPOINT_M} {suffix}"] = scores
    return variants


def calibrations(fold: Fold, methods: dict, max_m: int, passes: dict[str, str]) -> dict[str, ContextCalibration]:
    """Per candidate, the context calibration fitted on the fold's normal calibration slices."""
    contexts, scores = [], {}
    for sample in fold.calibration:
        loaded = sample.load()
        record = window_distances(fold, methods, sample, loaded.image)
        contexts.append(record["context"])
        for name, values in window_variants(record, max_m, passes).items():
            scores.setdefault(name, []).append(values)
    context = np.concatenate(contexts)
    return {name: ContextCalibration.fit(context, np.concatenate(values)) for name, values in scores.items()}


def longer_model(fold: Fold, factor: int) -> Path:
    """The fold's model trained ``factor`` times as many iterations: a copy of its run, resumed to the longer end."""
    directory = fold.model_dir / f"model-x{factor}"
    if not directory.is_dir():
        staging = directory.with_name(directory.name + ".copying")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(fold.model_dir / "model", staging)
        for finished in (METHOD_FILE, FIT_RECORD):  # without them the copy is a run to resume, not a finished fit
            (staging / finished).unlink()
        staging.rename(directory)
    steps = fold.entry.create().train_config.steps * factor
    entry = MethodEntry(fold.entry.name, fold.entry.preset, {**fold.entry.train, "steps": steps}, fold.entry.settings)
    started = time.perf_counter()
    _, _, reused = fitted_method(entry, fold.train, directory)
    if not reused:
        print(f"{fold.name}: trained on to {steps} iterations in {time.perf_counter() - started:.0f} s", flush=True)
    return directory


def fold_maps(fold: Fold, args: argparse.Namespace, out: dict) -> None:
    """Fit (or reuse) the fold's model and add, per data set and candidate, its tissue pixels to ``out``."""
    started = time.perf_counter()
    _, fit_seconds, reused = fitted_method(fold.entry, fold.train, fold.model_dir / "model")
    print(f"{fold.name}: model {'reused' if reused else f'fitted in {fit_seconds:.0f} s'}", flush=True)
    base = {"n_completions": args.max_completions, **SCORING}
    at_m10 = {**base, "n_completions": BEST_CHECKPOINT_M}
    methods = {
        "last": load_method(fold.model_dir / "model", **base),
        "best": load_method(fold.model_dir / "model", **at_m10, checkpoint="best"),
    }
    passes = {"best": "best"}  # the M = 10 passes: name -> candidate suffix
    if args.dropout_factors:
        for (name, suffix), settings in zip(DROPOUT_PASSES, DROPOUT_SETTINGS):
            methods[name] = load_method(fold.model_dir / "model", **at_m10, **settings)
            passes[name] = suffix
    if args.training_factor > 1:
        name, suffix = longer_pass(args.training_factor)
        methods[name] = load_method(longer_model(fold, args.training_factor), **at_m10)
        passes[name] = suffix
    calibrated = calibrations(fold, methods, args.max_completions, passes)
    references = {name: create_method(name) for name in REFERENCES}
    for dataset, samples in fold.tests.items():
        for sample in samples:
            loaded = sample.load()
            record = window_distances(fold, methods, sample, loaded.image)
            grid, _, _ = windows_of(methods["last"], loaded.image)
            maps = {}
            for name, scores in window_variants(record, args.max_completions, passes).items():
                maps[name] = window_map(grid, record["indices"], scores)
                maps[f"calibrated {name}"] = window_map(
                    grid, record["indices"], calibrated[name].z_scores(record["context"], scores)
                )
            for name, method in references.items():
                maps[name] = method.score_map(loaded.image)
            add_pixels(out.setdefault(dataset, {}), loaded, maps)
            if fold.name != dataset:  # each fold apart too
                add_pixels(out.setdefault(f"{dataset} {fold.name.split('/')[-1]}", {}), loaded, maps)
    print(f"{fold.name}: scored in {time.perf_counter() - started:.0f} s", flush=True)


def window_map(grid: WindowGrid, indices: np.ndarray, scores: np.ndarray) -> np.ndarray:
    values = np.full(grid.n_windows, np.nan)
    values[indices] = scores
    return assemble_heatmap(values.reshape(grid.shape), grid, "interpolated")


def add_pixels(out: dict, loaded: LoadedSample, maps: dict[str, np.ndarray]) -> None:
    tissue = loaded.tissue_mask
    normal = tissue & ~loaded.lesion_mask
    out.setdefault("labels", []).append(loaded.lesion_mask[tissue])
    brightness = maps["brightness"]
    for name, heatmap in maps.items():
        out.setdefault(name, []).append(heatmap[tissue].astype(np.float32))
        if normal.sum() > 1:
            out.setdefault(f"rho {name}", []).append(rank_correlation(heatmap[normal], brightness[normal]))


def summarize(pixels: dict) -> dict[str, dict[str, dict[str, float]]]:
    """data set -> candidate -> pooled tissue AUROC, AP and mean brightness rank correlation."""
    table = {}
    for dataset, values in pixels.items():
        labels = np.concatenate(values["labels"])
        table[dataset] = {
            name: {
                "auroc": roc_auc(labels, np.concatenate(parts)),
                "ap": average_precision(labels, np.concatenate(parts)),
                "rho": float(np.nanmean(values[f"rho {name}"])),
            }
            for name, parts in values.items()
            if name != "labels" and not name.startswith("rho ")
        }
    return table


def mean_ranks(table: dict) -> dict[str, float]:
    """The selection rule: mean rank (1 = best, ties share) of every candidate over the data sets x {AUROC, AP}."""
    candidates = [name for name in next(iter(table.values())) if name not in REFERENCES]
    candidates = [name for name in candidates if all(name in rows for rows in table.values())]
    ranks = {name: [] for name in candidates}
    for rows in table.values():
        for metric in ("auroc", "ap"):
            values = np.array([rows[name][metric] for name in candidates])
            order = (-values).argsort(kind="stable")
            rank = np.empty(len(values))
            rank[order] = np.arange(1, len(values) + 1)
            for value in np.unique(values):  # ties share their mean rank
                rank[values == value] = rank[values == value].mean()
            for name, r in zip(candidates, rank):
                ranks[name].append(r)
    return {name: float(np.mean(r)) for name, r in ranks.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brats", type=Path, default=Path("../shared/data/brats2015"))
    parser.add_argument("--phantoms-config", type=Path, default=Path("configs/bench-phantoms.yaml"))
    parser.add_argument("--out", type=Path, default=Path("runs/picard-study"))
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--max-completions", type=int, default=30)
    parser.add_argument("--test-slices", type=int, default=12)
    parser.add_argument("--synthetic", type=int, default=5)
    parser.add_argument("--calibration-slices", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout-factors", action="store_true",
                        help="also score at M = 10 with dropout p 0.25 and 0.75 and the paper's dropout layers")
    parser.add_argument("--training-factor", type=int, default=1,
                        help="also train every model this many times as long (resuming its run) and score its last "
                             "checkpoint at M = 10")  # fmt: skip
    parser.add_argument("--only", choices=("brats", "phantoms"), help="run one part of the study")
    args = parser.parse_args(argv)
    folds = []
    if args.only != "brats":
        folds.append(phantom_fold(args))
    if args.only != "phantoms":
        folds += brats_folds(args)
    pixels: dict = {}
    for fold in folds:
        fold_maps(fold, args, pixels)
    table = summarize(pixels)
    pooled = {dataset: table[dataset] for dataset in DATASETS if dataset in table}
    ranks = mean_ranks(pooled) if len(pooled) == len(DATASETS) else {}
    atomic_write_text(args.out / "study.json", dumps_json({"table": table, "mean_rank": ranks}, indent=1))
    atomic_write_text(args.out / "study.md", markdown(pooled, ranks) + "\n\n" + fold_markdown(table) + "\n")
    print(markdown(pooled, ranks))
    return 0


def markdown(table: dict, ranks: dict) -> str:
    """Pooled tissue AUROC / AP / brightness rank correlation per data set, candidates by mean rank."""
    datasets = [d for d in DATASETS if d in table]
    names = sorted(next(iter(table.values())), key=lambda n: (n not in REFERENCES, ranks.get(n, 0.0), n))
    lines = [
        "| candidate | " + " | ".join(f"{d} AUROC / AP / rho" for d in datasets) + " | mean rank |",
        "|---" * (len(datasets) + 2) + "|",
    ]
    for name in names:
        cells = [f"{table[d][name]['auroc']:.3f} / {table[d][name]['ap']:.3f} / {table[d][name]['rho']:.2f}"
                 for d in datasets]  # fmt: skip
        rank = f"{ranks[name]:.2f}" if name in ranks else "reference"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {rank} |")
    return "\n".join(lines)


def fold_markdown(table: dict) -> str:
    """Tissue AUROC of every candidate in every fold (one column per fold)."""
    folds = sorted(key for key in table if key not in DATASETS)
    names = sorted(table[folds[0]], key=lambda n: (n not in REFERENCES, n)) if folds else []
    lines = ["| candidate | " + " | ".join(folds) + " |", "|---" * (len(folds) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{table[f][name]['auroc']:.3f}" for f in folds) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
