"""Outputs of an evaluation: metrics.json, per_image.csv, metrics.md, froc.csv and the resolved config."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from picard_ad.config import save_config
from picard_ad.evaluation.core import Evaluation
from picard_ad.io.writers import atomic_write_text

# --- outputs -------------------------------------------------------------------------------------------------------


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow("" if isinstance(v, float) and math.isnan(v) else v for v in row)
    return buffer.getvalue()


def _number(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _markdown(evaluation: Evaluation) -> str:
    m, config = evaluation.metrics, evaluation.config
    tissue = f"masks {config.tissue_masks}" if config.tissue_masks else f"intensity > {config.tissue_threshold}"
    # An evaluation of images held in memory (``evaluate_images``) has no input files to name.
    inputs = (f"; heatmaps `{config.heatmaps}`, annotations `{config.annotations}`, tissue: {tissue}"
              if config.heatmaps is not None else "")
    lines = [
        "# picard-ad evaluation", "",
        f"{m['n_images']} images ({m['n_abnormal']} with lesions, {m['n_normal']} normal){inputs}.", "",
        "| Metric | Whole image | Tissue only |", "|---|---|---|",
    ]

    def pair(name: str, key: str, median: str | None = None) -> None:
        cells = []
        for prefix in ("", "tissue_"):
            text = _number(m[prefix + key])
            if median is not None:
                text += f" (median {_number(m[prefix + median])})"
            cells.append(text)
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")

    pair("Pixel AUROC, mean over images", "pixel_auroc_mean", "pixel_auroc_median")
    pair("Pixel AP, mean over images", "pixel_ap_mean", "pixel_ap_median")
    pooled = "pooled over images" + (f", 1 pixel in {m['pooled_stride']}" if m["pooled_stride"] > 1 else "")
    pair(f"Pixel AUROC, {pooled}", "pixel_auroc_pooled")
    pair(f"Pixel AP, {pooled}", "pixel_ap_pooled")
    pair("Inside/outside mean ratio", "inside_outside_ratio_mean", "inside_outside_ratio_median")
    pair(f"AUPRO up to FPR {config.aupro_fpr_limit:g}", "aupro")
    for key, name in (("dice", "Dice at the calibrated threshold"),
                      ("best_dice_optimistic", "Best Dice (optimistic upper bound)"),
                      ("dice_fifth_of_test_optimistic", "Dice, threshold from a fifth of the test images (optimistic: "
                       "threshold from labelled test images)")):
        cells = [m[prefix + key] for prefix in ("", "tissue_")]
        lines.append(f"| {name} | " + " | ".join(
            "n/a" if c is None else f"{_number(c['mean'])} (t = {c['threshold']:.4g})" for c in cells) + " |")
    for index, rate in enumerate(config.fp_rates):
        cells = [_number(m[p + "lesion_sensitivity"]["sensitivity"][index]) for p in ("", "tissue_")]
        lines.append(f"| Lesion sensitivity at {rate:g} FP/image | {cells[0]} | {cells[1]} |")
    score = ("given with the images" if m["image_score_quantile"] is None
             else f"{m['image_score_quantile']:g} quantile of the tissue heatmap")
    lines += [
        "", f"Image level (score: {score}): AUROC {_number(m['image_auroc'])}, AP {_number(m['image_ap'])}.", "",
    ]
    unit = "px" if config.lesion_size_measure == "diagonal" else "px^2"
    for prefix, title in (("", "whole image"), ("tissue_", "peaks in tissue only")):
        record = m[prefix + "lesion_sensitivity"]
        lines += [f"## Lesion sensitivity by box {config.lesion_size_measure} ({unit}), {title}", "",
                  "| Size | Lesions | " + " | ".join(f"{r:g} FP" for r in config.fp_rates) + " |",
                  "|---|---|" + "---|" * len(config.fp_rates)]
        for item in [{"bin": "all", "n_lesions": record["n_lesions"], "sensitivity": record["sensitivity"]},
                     *record["by_size"]]:
            lines.append(f"| {item['bin']} | {item['n_lesions']} | "
                         + " | ".join(_number(s) for s in item["sensitivity"]) + " |")
        lines.append("")
    if m["notes"]:
        lines += ["## Notes", "", *(f"- {note}" for note in m["notes"]), ""]
    return "\n".join(lines)


def write_evaluation(evaluation: Evaluation, out: str | Path) -> list[Path]:
    """Write metrics.json, per_image.csv, metrics.md, froc.csv and config.yaml into ``out``; return their paths."""
    out = Path(out)
    header = [key for key in evaluation.rows[0] if key != "identity"] if evaluation.rows else ["name"]
    froc_rows = [
        (variant, threshold, fp, sensitivity)
        for variant, curve in evaluation.froc.items()
        for threshold, fp, sensitivity in zip(curve.thresholds, curve.mean_fp_per_image, curve.sensitivity)
    ]
    texts = {
        "per_image.csv": _csv_text(header, [[row[key] for key in header] for row in evaluation.rows]),
        "froc.csv": _csv_text(["variant", "threshold", "mean_fp_per_image", "sensitivity"], froc_rows),
        "metrics.md": _markdown(evaluation),
    }
    written = []
    for name, text in texts.items():
        atomic_write_text(out / name, text)
        written.append(out / name)
    save_config(evaluation.config, out / "config.yaml")
    # metrics.json goes last: its presence means the evaluation finished.
    atomic_write_text(out / "metrics.json", json.dumps(evaluation.metrics, indent=1, allow_nan=False) + "\n")
    return [*written, out / "config.yaml", out / "metrics.json"]
