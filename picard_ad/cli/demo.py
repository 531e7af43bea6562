"""``picard-ad demo``: the main job end to end on the embedded phantoms.

Writes normal phantoms and trains a small completion network on them, heatmaps abnormal phantoms with PICARD's
default score (when it is not the paper's), the paper's MCD (M = 10) and the deterministic single completion (M = 1,
no dropout), evaluates each against the exact lesion masks, and prints them beside the trivial brightness and
local-contrast references. Every step resumes:
a rerun reuses the finished training and heatmaps.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

# (label, output folder, settings) of the PICARD variants the demo compares: the paper's MCD and the deterministic
# single completion; the default score (docs/picard-study.md) is added before them when it differs from MCD.
_VARIANTS = (
    ("PICARD MCD image, M = 10 (the paper's)", "heatmaps-M10", {"n_completions": 10, "score": "mcd-image"}),
    ("PICARD M = 1, no dropout", "heatmaps-M1", {"n_completions": 1, "dropout_p": 0.0, "score": "mcd-image"}),
)


def _variants() -> tuple[tuple[str, str, dict], ...]:
    from picard_ad.methods.picard import PicardSettings

    default = PicardSettings()
    if (default.score, default.n_completions) == ("mcd-image", 10):
        return _VARIANTS
    label = f"PICARD default: {default.score}, M = {default.n_completions}"
    return ((label, "heatmaps-default", {}), *_VARIANTS)
_REFERENCES = {"brightness reference": "brightness", "local-contrast reference": "local-contrast"}
_METRIC_COLUMNS = (
    ("pixel_auroc_mean", "pixel AUROC"),
    ("pixel_ap_mean", "pixel AP"),
    ("tissue_pixel_auroc_mean", "tissue pixel AUROC"),
    ("tissue_pixel_ap_mean", "tissue pixel AP"),
)


def _reference_metrics(test_dir: Path, tissue_threshold: float) -> dict[str, dict[str, float]]:
    """Mean pixel AUROC/AP of the trivial reference maps over the abnormal test phantoms, whole image and tissue."""
    from picard_ad.data.tissue import tissue_mask
    from picard_ad.io import find_images, read_image
    from picard_ad.io.annotations import AnnotationSet
    from picard_ad.methods import create_method
    from picard_ad.metrics import pixel_metrics, summarize

    masks = AnnotationSet.from_mask_folder(test_dir / "masks")
    methods = {label: create_method(name) for label, name in _REFERENCES.items()}
    whole: dict[str, list] = {label: [] for label in methods}
    tissue: dict[str, list] = {label: [] for label in methods}
    for path in find_images(test_dir / "images"):
        pixels = read_image(path).pixels
        lesion = masks.mask_for(path, pixels.shape)
        region = tissue_mask(pixels, tissue_threshold)
        for label, method in methods.items():
            heatmap = method.score_map(pixels)
            whole[label].append(pixel_metrics(heatmap, lesion, name=path.name))
            tissue[label].append(pixel_metrics(heatmap, lesion, region=region, name=path.name))
    results = {}
    for name in methods:
        image_summary, tissue_summary = summarize(whole[name]), summarize(tissue[name])
        results[name] = {
            "pixel_auroc_mean": image_summary.mean_pixel_auroc,
            "pixel_ap_mean": image_summary.mean_pixel_ap,
            "tissue_pixel_auroc_mean": tissue_summary.mean_pixel_auroc,
            "tissue_pixel_ap_mean": tissue_summary.mean_pixel_ap,
        }
    return results


def _table(rows: dict[str, dict[str, float]]) -> str:
    header = "| heatmap | " + " | ".join(title for _, title in _METRIC_COLUMNS) + " |"
    lines = [header, "|---" * (len(_METRIC_COLUMNS) + 1) + "|"]
    for name, metrics in rows.items():
        values = [metrics.get(key) for key, _ in _METRIC_COLUMNS]
        lines.append(f"| {name} | " + " | ".join("n/a" if v is None else f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines)


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-output"), show_default=True,
              help="Output folder; a rerun continues where the last one stopped.")
@click.option("--normal", type=int, default=30, show_default=True, help="Normal phantoms to train on.")
@click.option("--abnormal", type=int, default=4, show_default=True, help="Abnormal phantoms to heatmap.")
@click.option("--size", nargs=2, type=int, default=(1024, 768), show_default=True, metavar="H W",
              help="Phantom size in pixels (the breast keeps its physical size).")
@click.option("--steps", type=int, default=2000, show_default=True, help="Training iterations (small preset).")
@click.option("--stride", type=int, default=16, show_default=True, help="Sliding-window stride in pixels.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the phantoms and the training.")
def command(out: Path, normal: int, abnormal: int, size: tuple[int, int], steps: int, stride: int, seed: int) -> None:
    """Train a small PICARD model on normal phantoms, heatmap abnormal ones with three scores and evaluate them."""
    from picard_ad.data.phantoms import PhantomConfig, write_phantom_dataset
    from picard_ad.evaluation import EvaluationConfig, evaluate, write_evaluation
    from picard_ad.io.writers import atomic_write_text, dumps_json
    from picard_ad.jobs.heatmap import HeatmapJob, HeatmapRunner, heatmap_inputs
    from picard_ad.localize import reuse_freed_memory
    from picard_ad.methods import create_method, load_method
    from picard_ad.training import run_holds_training

    if normal < 2 or abnormal < 1:
        raise click.BadParameter("the demo needs at least 2 normal and 1 abnormal phantom")
    phantom_config = PhantomConfig().resized(size)
    train_dir, test_dir, run_dir = out / "train-phantoms", out / "test-phantoms", out / "run"
    variants = _variants()
    steps_total = 2 + len(variants)
    click.echo(f"1/{steps_total} phantoms: {normal} normal for training in {train_dir}, {abnormal} abnormal in "
               f"{test_dir}")
    write_phantom_dataset(train_dir, normal, 0, phantom_config, seed=seed, progress=True)
    write_phantom_dataset(test_dir, 0, abnormal, phantom_config, seed=seed + 1, progress=True)

    click.echo(f"2/{steps_total} training the small completion network for {steps} iterations in {run_dir}")
    picard = create_method("picard", preset="small", train={"steps": steps, "seed": seed})
    picard.fit(train_dir / "images", run_dir=run_dir, resume=run_holds_training(run_dir), progress=True)
    best = json.loads((run_dir / "best" / "config.json").read_text())
    click.echo(f"    held-out completion L1 {best['val_l1']:.4f} (best, iteration {best['step']})")

    reuse_freed_memory()
    rows: dict[str, dict[str, float]] = {}
    files = heatmap_inputs([test_dir / "images"])
    for number, (label, folder, settings) in enumerate(variants, start=3):
        click.echo(f"{number}/{steps_total} {label}: heatmaps in {out / folder}, then evaluation")
        method = load_method(run_dir, stride=stride, checkpoint="best", **settings)
        job = HeatmapJob(annotations=str(test_dir / "boxes.csv"))
        runner = HeatmapRunner(method, job, out / folder, progress=True, inputs=[file for file, _ in files])
        for file, name in files:
            runner.run(file, name)
        click.echo(f"    wrote {runner.written} heatmap output(s), skipped {runner.skipped} finished")
        evaluation = evaluate(EvaluationConfig(heatmaps=str(out / folder), annotations=str(test_dir / "masks")))
        write_evaluation(evaluation, out / f"evaluation-{folder.removeprefix('heatmaps-')}")
        rows[label] = evaluation.metrics
    rows.update(_reference_metrics(test_dir, EvaluationConfig().tissue_threshold))

    table = _table(rows)
    atomic_write_text(out / "summary.md", table + "\n")
    atomic_write_text(out / "summary.json", dumps_json(rows, indent=2))
    click.echo("\nmean over the abnormal test phantoms (tissue = breast pixels only):\n")
    click.echo(table)
    click.echo(f"\noverlays: {out}/heatmaps-M10/*_overlay.png; metrics: {out}/evaluation-M10/metrics.md")
    click.echo("Phantoms are a test bed for software and methods, not evidence about patients.")
