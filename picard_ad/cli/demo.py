"""``picard-ad demo``: the main job on the embedded phantoms.

Until the PICARD heatmapper lands, the demo writes phantoms, reads them back through the public readers and
annotation loaders, scores trivial reference heatmaps against the exact lesion masks and checks the metrics
themselves (an oracle must score 1, noise about 0.5, and the values must equal scikit-learn's).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import numpy as np

from picard_ad.errors import PicardError

_REFERENCE_MAPS = ("oracle (lesion mask)", "brightness", "local contrast", "random")


def _heatmaps(image: np.ndarray, lesion_mask: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    from picard_ad.methods.reference_maps import brightness_map, local_contrast_map

    return {
        "oracle (lesion mask)": lesion_mask.astype(np.float32),
        "brightness": brightness_map(image),
        "local contrast": local_contrast_map(image),
        "random": rng.random(image.shape, dtype=np.float32),
    }


def _self_check(results: dict, sklearn_gaps: list[float]) -> list[str]:
    """Problems found in the metric values; empty when the metrics behave as they must."""
    problems = []
    for region in ("image", "tissue"):
        oracle = results["oracle (lesion mask)"][region]["mean_pixel_auroc"]
        if oracle != 1.0:
            problems.append(f"oracle heatmap has {region} pixel AUROC {oracle}, expected exactly 1")
        noise = results["random"][region]["mean_pixel_auroc"]
        if not abs(noise - 0.5) < 0.05:
            problems.append(f"random heatmap has {region} pixel AUROC {noise:.3f}, expected about 0.5")
    if sklearn_gaps and max(sklearn_gaps) > 1e-9:
        problems.append(f"metrics differ from scikit-learn by up to {max(sklearn_gaps):.2e}")
    return problems


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _table(results: dict) -> str:
    lines = [
        "| heatmap | pixel AUROC (image) | pixel AP (image) | pixel AUROC (tissue) | pixel AP (tissue) | in/out ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, by_region in results.items():
        image, tissue = by_region["image"], by_region["tissue"]
        lines.append(
            f"| {name} | {_number(image['mean_pixel_auroc'])} | {_number(image['mean_pixel_ap'])} | "
            f"{_number(tissue['mean_pixel_auroc'])} | {_number(tissue['mean_pixel_ap'])} | "
            f"{_number(tissue['mean_ratio'], 2)} |"
        )
    return "\n".join(lines)


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo-output"), show_default=True,
              help="Output folder.")
@click.option("--normal", type=int, default=2, show_default=True, help="Normal phantoms to write.")
@click.option("--abnormal", type=int, default=4, show_default=True, help="Phantoms with lesions to score.")
@click.option("--seed", type=int, default=0, show_default=True, help="Dataset seed.")
def command(out: Path, normal: int, abnormal: int, seed: int) -> None:
    """Run the main job on the embedded phantoms and print a metrics self-check."""
    from picard_ad.data.phantoms import PhantomConfig, write_phantom_dataset
    from picard_ad.data.tissue import tissue_mask
    from picard_ad.io import find_images, read_image
    from picard_ad.io.annotations import AnnotationSet
    from picard_ad.io.writers import atomic_write_text
    from picard_ad.metrics import pixel_metrics, roc_auc, summarize
    from picard_ad.report.montage import save_montage

    if abnormal < 1:
        raise click.BadParameter("the self-check needs at least one abnormal phantom", param_hint="--abnormal")
    data_dir = out / "phantoms"
    click.echo(f"1/3 writing {normal} normal and {abnormal} abnormal phantoms to {data_dir}")
    write_phantom_dataset(data_dir, normal, abnormal, PhantomConfig(), seed=seed, progress=True)

    click.echo("2/3 reading them back and scoring reference heatmaps against the lesion masks")
    boxes = AnnotationSet.from_boxes_csv(data_dir / "boxes.csv")
    masks = AnnotationSet.from_mask_folder(data_dir / "masks")
    try:  # an independent implementation to compare with; the test extra installs it
        from sklearn.metrics import roc_auc_score
    except ImportError:
        roc_auc_score = None
    rng = np.random.default_rng(seed)
    per_map: dict[str, dict[str, list]] = {name: {"image": [], "tissue": []} for name in _REFERENCE_MAPS}
    sklearn_gaps: list[float] = []
    panels, overlays, outlines, titles = [], [], [], []
    for path in (p for p in find_images(data_dir / "images") if p.stem.startswith("abnormal")):
        scan = read_image(path)
        lesion = masks.mask_for(path.name, scan.pixels.shape)
        box_mask = boxes.mask_for(path.name, scan.pixels.shape)
        if lesion.any() and not box_mask[lesion].all():
            raise PicardError(f"{path}: lesion mask extends outside its boxes in boxes.csv")
        tissue = tissue_mask(scan.pixels)
        for name, heatmap in _heatmaps(scan.pixels, lesion, rng).items():
            per_map[name]["image"].append(pixel_metrics(heatmap, lesion, name=path.name))
            per_map[name]["tissue"].append(pixel_metrics(heatmap, lesion, region=tissue, name=path.name))
            if roc_auc_score is not None:
                sklearn_gaps.append(abs(roc_auc(lesion, heatmap) - roc_auc_score(lesion.ravel(), heatmap.ravel())))
            if name == "brightness":
                panels.append(scan.pixels)
                overlays.append(heatmap)
                outlines.append(lesion)
                titles.append(path.name)

    results = {
        name: {region: summarize(items).to_dict() for region, items in by_region.items()}
        for name, by_region in per_map.items()
    }
    problems = _self_check(results, sklearn_gaps)
    table = _table(results)
    atomic_write_text(out / "metrics.json", json.dumps(results, indent=2))
    atomic_write_text(out / "metrics.md", table + "\n")
    if panels:
        save_montage(out / "overview.png", panels, titles=titles, overlays=overlays, masks=outlines)

    click.echo("3/3 metrics self-check (mean over abnormal phantoms; tissue = breast pixels only)\n")
    click.echo(table)
    click.echo("")
    if sklearn_gaps:
        click.echo(f"largest difference from scikit-learn's roc_auc_score: {max(sklearn_gaps):.1e}")
    if problems:
        raise PicardError("metrics self-check failed: " + "; ".join(problems))
    brightness = results["brightness"]
    gap = (brightness["image"]["mean_pixel_auroc"] or math.nan) - (brightness["tissue"]["mean_pixel_auroc"] or math.nan)
    gap = None if math.isnan(gap) else gap
    if gap is not None:
        click.echo(f"background pixels add {gap:+.3f} to the brightness map's pixel AUROC: compare methods on tissue")
    click.echo(f"self-check passed; results in {out}/ (metrics.md, metrics.json, overview.png, phantoms/)")
