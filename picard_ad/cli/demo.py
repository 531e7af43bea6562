"""``picard-ad demo``: the main job end to end on the embedded phantoms.

Writes normal phantoms and trains a small completion network on them, heatmaps abnormal phantoms with PICARD
(MCD, M = 10) and with the deterministic single completion (M = 1, no dropout), evaluates both against the exact
lesion masks, and prints them beside the trivial brightness and local-contrast references. Every step resumes:
a rerun reuses the finished training and heatmaps.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

# (label, output folder, heatmap flags) of the PICARD variants the demo compares.
_VARIANTS = (
    ("PICARD MCD image, M = 10", "heatmaps-M10", {"n_completions": 10}),
    ("PICARD M = 1, no dropout", "heatmaps-M1", {"n_completions": 1, "dropout_p": 0.0}),
)
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
    from picard_ad.methods.reference_maps import brightness_map, local_contrast_map
    from picard_ad.metrics import pixel_metrics, summarize

    masks = AnnotationSet.from_mask_folder(test_dir / "masks")
    maps = {"brightness reference": brightness_map, "local-contrast reference": local_contrast_map}
    whole: dict[str, list] = {name: [] for name in maps}
    tissue: dict[str, list] = {name: [] for name in maps}
    for path in find_images(test_dir / "images"):
        pixels = read_image(path).pixels
        lesion = masks.mask_for(path.name, pixels.shape)
        region = tissue_mask(pixels, tissue_threshold)
        for name, make_map in maps.items():
            heatmap = make_map(pixels)
            whole[name].append(pixel_metrics(heatmap, lesion, name=path.name))
            tissue[name].append(pixel_metrics(heatmap, lesion, region=region, name=path.name))
    results = {}
    for name in maps:
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
@click.pass_context
def command(ctx: click.Context, out: Path, normal: int, abnormal: int, size: tuple[int, int], steps: int,
            stride: int, seed: int) -> None:
    """Train a small PICARD model on normal phantoms, heatmap abnormal ones and evaluate (about 12 min on 2 cores)."""
    from picard_ad.cli import heatmap as heatmap_cli
    from picard_ad.data.phantoms import PhantomConfig, write_phantom_dataset
    from picard_ad.evaluation import EvaluationConfig, evaluate, write_evaluation
    from picard_ad.io import find_images
    from picard_ad.io.writers import atomic_write_text
    from picard_ad.training.config import preset_config, resolve_config
    from picard_ad.training.trainer import run_holds_training, train

    if normal < 2 or abnormal < 1:
        raise click.BadParameter("the demo needs at least 2 normal and 1 abnormal phantom")
    phantom_config = PhantomConfig().resized(size)
    train_dir, test_dir, run_dir = out / "train-phantoms", out / "test-phantoms", out / "run"
    click.echo(f"1/4 phantoms: {normal} normal for training in {train_dir}, {abnormal} abnormal in {test_dir}")
    write_phantom_dataset(train_dir, normal, 0, phantom_config, seed=seed, progress=True)
    write_phantom_dataset(test_dir, 0, abnormal, phantom_config, seed=seed + 1, progress=True)

    click.echo(f"2/4 training the small completion network for {steps} iterations in {run_dir}")
    config = resolve_config(preset_config("small"), None, {"steps": steps, "seed": seed})
    result = train(config, train_dir / "images", run_dir, resume=run_holds_training(run_dir))
    click.echo(f"    held-out completion L1 {result.best_val_l1:.4f} (best, iteration {result.best_step})"
               if result.best_val_l1 is not None else "    trained")

    rows: dict[str, dict[str, float]] = {}
    images = find_images(test_dir / "images")
    for step, (label, folder, flags) in enumerate(_VARIANTS, start=3):
        click.echo(f"{step}/4 {label}: heatmaps in {out / folder}, then evaluation")
        ctx.invoke(heatmap_cli.command, inputs=tuple(images), model_dir=run_dir, out=out / folder,
                   annotations=str(test_dir / "boxes.csv"), stride=stride, checkpoint="best", **flags)
        evaluation = evaluate(EvaluationConfig(heatmaps=str(out / folder), annotations=str(test_dir / "masks")))
        write_evaluation(evaluation, out / f"evaluation-{folder.removeprefix('heatmaps-')}")
        rows[label] = evaluation.metrics
    rows.update(_reference_metrics(test_dir, EvaluationConfig().tissue_threshold))

    table = _table(rows)
    atomic_write_text(out / "summary.md", table + "\n")
    atomic_write_text(out / "summary.json", json.dumps(rows, indent=2, default=float))
    click.echo("\nmean over the abnormal test phantoms (tissue = breast pixels only):\n")
    click.echo(table)
    click.echo(f"\noverlays: {out}/heatmaps-M10/*_overlay.png; metrics: {out}/evaluation-M10/metrics.md")
    click.echo("Phantoms are a test bed for software and methods, not evidence about patients.")
