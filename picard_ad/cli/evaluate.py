"""``picard-ad evaluate``: localization metrics of a folder of heatmaps, over whole images and over tissue only."""

from __future__ import annotations

from pathlib import Path

import click

from picard_ad.errors import ConfigError


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _names(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (", ... (all in metrics.json)" if len(names) > shown else "")


@click.command("evaluate")
@click.option("--heatmaps", help="Folder of NAME_heatmap.npy / .nii.gz files with their NAME.json sidecars.")
@click.option("--annotations", help="Mask folder, boxes CSV (image,x,y,width,height), circles CSV "
                                    "(image,x,y,radius) or bcs-dbt:BOXES.csv,FILE_PATHS.csv[,ROOT]; images are "
                                    "named by their path relative to the annotated root.")
@click.option("--out", help="Output folder for metrics.json, per_image.csv, metrics.md, froc.csv, config.yaml.")
@click.option("--tissue-threshold", type=float, help="Tissue = source image above this intensity [0.02].")
@click.option("--tissue-masks", help="Folder of tissue masks named like the images (instead of a threshold).")
@click.option("--calibration", multiple=True,
              help="Heatmaps of other images to choose the Dice threshold on: a folder, heatmap file or list file "
                   "(repeatable). Images shared with the test heatmaps are refused.")
@click.option("--image-score-quantile", type=float, help="Image score = this quantile of the tissue heatmap [0.99].")
@click.option("--peak-radius", type=float, help="Non-maximum suppression radius of heatmap peaks, px [100].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML file with these keys.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def command(config_path, quiet, calibration, **flags) -> None:
    """Evaluate anomaly heatmaps against lesion annotations.

    Pixel AUROC/AP (mean and median over images), inside/outside ratio, AUPRO up to FPR 0.3, Dice at a threshold
    from a calibration split and the optimistic best Dice, lesion sensitivity at 0.5/1/2/4 false positives per
    image from heatmap peaks (DBTex hit rule), each over the whole image and over tissue only, and image-level
    AUROC/AP when normal images are present.
    """
    from picard_ad.config import load_config
    from picard_ad.evaluation import EvaluationConfig, evaluate, write_evaluation

    if flags["tissue_threshold"] is not None and flags["tissue_masks"] is not None:
        raise ConfigError("give --tissue-threshold or --tissue-masks, not both")
    config = load_config(EvaluationConfig, config_path, {**flags, "calibration": list(calibration) or None})
    if config.out is None:
        raise ConfigError("'out' is required (--out or 'out:' in the config file)")
    result = evaluate(config, progress=not quiet)
    write_evaluation(result, config.out)
    metrics = result.metrics
    click.echo(
        f"{metrics['n_images']} images ({metrics['n_abnormal']} with lesions): pixel AUROC "
        f"{_number(metrics['pixel_auroc_mean'])} whole image, {_number(metrics['tissue_pixel_auroc_mean'])} tissue "
        f"only; AUPRO {_number(metrics['aupro'])} / {_number(metrics['tissue_aupro'])}"
    )
    if metrics["unannotated_heatmaps"]:
        click.echo(f"heatmaps without annotation, evaluated as normal images: {metrics['n_unannotated_heatmaps']} "
                   f"({_names(metrics['unannotated_heatmaps'])})")
    if metrics["annotations_without_heatmap"]:
        click.echo(f"annotated images without heatmap, not evaluated: {metrics['n_annotations_without_heatmap']} "
                   f"({_names(metrics['annotations_without_heatmap'])})")
    click.echo(f"wrote metrics.json, per_image.csv, metrics.md, froc.csv and config.yaml to {config.out}")
