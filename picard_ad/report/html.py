"""The benchmark's self-contained HTML report: metrics table, real vs synthetic anomalies, label-free Dice thresholds,
pooled ROC/PR curves, best/worst overlays, the ablations beside the references, config."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from picard_ad.benchmark import HEADLINE, AblationResult, BenchmarkResult, map_file
from picard_ad.config import to_dict
from picard_ad.io.writers import atomic_path, atomic_write_text, dumps_json
from picard_ad.metrics import precision_recall_curve, roc_curve
from picard_ad.report.montage import save_montage

CURVE_POINTS = 2000  # points kept per plotted curve; pooled pixels give up to one per distinct score

COLUMNS = (
    ("pixel_auroc_pooled", "pixel AUROC"),
    ("pixel_ap_pooled", "pixel AP"),
    ("tissue_pixel_auroc_pooled", "tissue pixel AUROC"),
    ("tissue_pixel_ap_pooled", "tissue pixel AP"),
    ("tissue_pixel_auroc_mean", "tissue AUROC, mean per image"),
    ("tissue_pixel_ap_mean", "tissue AP, mean per image"),
    ("tissue_aupro", "tissue AUPRO (FPR <= 0.3)"),
    ("tissue_lesion_sensitivity@1", "lesion sensitivity at 1 FP / image (tissue)"),
    ("image_auroc", "image AUROC"),
    ("image_ap", "image AP"),
    ("dice.mean", "Dice, synthetic-validation threshold"),
    ("best_dice_optimistic.mean", "Dice, best test threshold (optimistic upper bound)"),
    ("dice_fifth_of_test_optimistic.mean", "Dice, threshold from 1/5 of test (optimistic: threshold from labelled test "
     "images)"),
    ("brightness_rank_correlation", "rank correlation with brightness, normal tissue"),
    ("fit_seconds", "fit (s)"),
    ("score_seconds_per_image", "score (s / image)"),
)
"""(metric, title) of the metrics table: ``picard-ad evaluate``'s keys, ``a.b`` for key b of metric a, and
``name@r`` for a lesion sensitivity at r false positives per image."""

ABLATION_COLUMNS = tuple(column for column in COLUMNS if column[0] not in ("fit_seconds", "dice.mean"))
"""The methods' columns but the fit time (every variant of an ablation uses the one fitted method) and the Dice at
the synthetic-validation threshold (only the methods score the validation images)."""

ORIGIN_COLUMNS = (
    ("tissue_pixel_auroc_pooled", "tissue pixel AUROC"),
    ("tissue_pixel_ap_pooled", "tissue pixel AP"),
    ("image_auroc", "image AUROC"),
    ("dice.mean", "Dice, synthetic-validation threshold"),
    ("best_dice_optimistic.mean", "Dice, best test threshold (optimistic)"),
    ("dice_fifth_of_test_optimistic.mean", "Dice, threshold from 1/5 of test (optimistic)"),
)
"""Columns of the real-vs-synthetic table, each given for the real and for the synthetic abnormal test images."""

THRESHOLD_COLUMNS = (
    ("dice.threshold", "threshold chosen on synthetic validation"),
    ("dice.calibration_mean_dice", "Dice on synthetic validation"),
    ("dice.mean", "test Dice at that threshold"),
    ("best_dice_optimistic.threshold", "best test threshold"),
    ("best_dice_optimistic.mean", "test Dice at best threshold (optimistic upper bound)"),
    ("dice_fifth_of_test_optimistic.threshold", "threshold chosen on a labelled 1/5 of test (optimistic)"),
    ("dice_fifth_of_test_optimistic.mean", "Dice on the other 4/5 of test at that threshold (optimistic: threshold "
     "from labelled test images)"),
)
"""Columns of the label-free threshold table; thresholds are in each method's map units."""

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.flagged td { background: #fde2e2; }
.flag { color: #b00020; font-weight: bold; }
img { max-width: 100%; }
pre { background: #f4f4f4; padding: 1em; overflow-x: auto; }
"""


def metric(metrics: dict[str, Any], key: str) -> Any:
    """A value of a metrics dict by column key (see ``COLUMNS``); None where it is missing."""
    name, _, rate = key.partition("@")
    if rate:
        sensitivity = metrics.get(name) or {}
        rates = sensitivity.get("fp_per_image", [])
        return sensitivity["sensitivity"][rates.index(float(rate))] if float(rate) in rates else None
    name, _, part = key.partition(".")
    value = metrics.get(name)
    if part:
        return value.get(part) if isinstance(value, dict) else None
    return value


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _is_reference(result: BenchmarkResult, name: str) -> bool:
    """Whether the row labelled ``name`` is a trivial reference's (ablation variants never are)."""
    return any(m.name == name and m.is_reference for m in result.methods)


def _status(result: BenchmarkResult, name: str, beats: bool | None) -> str:
    if _is_reference(result, name):
        return "best reference" if name == result.best_reference else "reference"
    return "beats the references" if beats else "DOES NOT BEAT the best reference"


def _versus_best_reference(result: BenchmarkResult, metrics: dict[str, Any]) -> str:
    """Tissue pixel AUROC minus the best reference's, signed ("+0.012"), or "n/a"."""
    best = next(m for m in result.methods if m.name == result.best_reference).metrics[HEADLINE]
    value = metrics[HEADLINE]
    if any(v is None or math.isnan(v) for v in (value, best)):
        return "n/a"
    return f"{value - best:+.3f}"


def _ablation_groups(result: BenchmarkResult) -> dict[tuple[str, str], list[AblationResult]]:
    """The variants of each ablation, by (method, setting), in config order."""
    groups: dict[tuple[str, str], list[AblationResult]] = {}
    for variant in result.ablations:
        groups.setdefault((variant.method, variant.setting), []).append(variant)
    return groups


def _ablation_title(result: BenchmarkResult, label: str, setting: str) -> str:
    """What the setting of the method entry ``label`` is, in the words of its declaration."""
    from picard_ad.methods import method_class

    try:
        name = result.config.entry(label).name
    except KeyError:  # a result assembled without its entries in the config: the label is the method's name
        name = label
    fields = {field.name: field for field in dataclasses.fields(method_class(name).settings_class)}
    return fields[setting].metadata.get("help", setting) if setting in fields else setting


def _ablation_rows(
    result: BenchmarkResult, variants: list[AblationResult]
) -> list[tuple[str, dict[str, Any], str, bool]]:
    """(label, metrics, status, flagged) of the variants of one ablation, then of the references."""
    rows = [
        (a.value, a.metrics, _status(result, a.name, a.beats_references), a.beats_references is False)
        for a in variants
    ]
    rows += [
        (f"reference: {m.name}", m.metrics, _status(result, m.name, None), False)
        for m in result.methods
        if m.is_reference
    ]
    return rows


def metrics_markdown(result: BenchmarkResult) -> str:
    """The metrics table as Markdown, one row per method."""
    lines = [
        *(f"**Warning:** {warning}\n" for warning in result.data_summary.get("warnings", [])),
        "| method | " + " | ".join(title for _, title in COLUMNS) + " | status |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for method in result.methods:
        values = " | ".join(_number(metric(method.metrics, key)) for key, _ in COLUMNS)
        lines.append(f"| {method.name} | {values} | {_status(result, method.name, method.beats_references)} |")
    if result.ablations:
        titles = " | ".join(title for _, title in ABLATION_COLUMNS)
        lines += [
            "",
            f"| ablation | variant | {titles} | tissue AUROC vs best reference | status |",
            "|---" * (len(ABLATION_COLUMNS) + 4) + "|",
        ]
        rows = [
            (f"{a.method} {a.setting}", a.value, a.metrics, _status(result, a.name, a.beats_references))
            for a in result.ablations
        ]
        rows += [
            ("reference", m.name, m.metrics, _status(result, m.name, None))
            for m in result.methods
            if m.is_reference
        ]
        for setting, label, metrics, status in rows:
            values = " | ".join(_number(metric(metrics, key)) for key, _ in ABLATION_COLUMNS)
            lines.append(f"| {setting} | {label} | {values} | {_versus_best_reference(result, metrics)} | {status} |")
    titles, rows = origin_table(result)
    if rows:
        lines += [
            "",
            "Real vs synthetic abnormal test images (each pooled with the normal test images):",
            "",
            *_markdown_table("method", titles, rows),
        ]
    titles, rows = threshold_table(result)
    if rows:
        lines += [
            "",
            "Label-free Dice threshold, chosen on the synthetic validation set:",
            "",
            *_markdown_table("method", titles, rows),
        ]
    lines.append("")
    lines.append(
        f"Data: {_data_line(result)}. Tissue pixel AUROC and AP pool the tissue pixels of all test images; "
        "Dice is the mean over abnormal test images; the best test threshold is tuned on the test labels (an "
        "optimistic upper bound); the 1/5-of-test Dice (Zimmerer's thesis, Table 3.1) takes its threshold from the "
        "labels of a seeded fifth of the abnormal test images and is the mean over the other four fifths (optimistic: "
        "threshold from labelled test images; never used to choose anything). The best trivial reference is "
        f"{result.best_reference}."
    )
    return "\n".join(lines) + "\n"


def _threshold_cell(key: str, value: Any) -> str:
    """A THRESHOLD_COLUMNS cell: thresholds in map units with 4 significant digits, Dice as ``_number``."""
    return f"{value:.4g}" if key.endswith(".threshold") and value is not None else _number(value)


def origin_table(result: BenchmarkResult) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(column titles, (method, cells) rows) comparing real and synthetic abnormal test images; no rows unless the
    test split holds both."""
    titles = [f"{origin}: {title}" for origin in ("real", "synthetic") for _, title in ORIGIN_COLUMNS]
    rows = [
        (
            m.name,
            [
                _number(metric(m.real_vs_synthetic[origin], key))
                for origin in ("real", "synthetic")
                for key, _ in ORIGIN_COLUMNS
            ],
        )
        for m in result.methods
        if m.real_vs_synthetic
    ]
    return titles, rows


def threshold_table(result: BenchmarkResult) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(column titles, (method, cells) rows) of the Dice thresholds; no rows without a synthetic validation set."""
    rows = [
        (m.name, [_threshold_cell(key, metric(m.metrics, key)) for key, _ in THRESHOLD_COLUMNS])
        for m in result.methods
        if m.metrics.get("dice") is not None
    ]
    return [title for _, title in THRESHOLD_COLUMNS], rows


def _markdown_table(first: str, titles: list[str], rows: list[tuple[str, list[str]]]) -> list[str]:
    return [
        f"| {first} | " + " | ".join(titles) + " |",
        "|---" * (len(titles) + 1) + "|",
        *(f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows),
    ]


def _table_html(first: str, titles: list[str], rows: list[tuple[str, list[str]]]) -> str:
    header = "".join(f"<th>{html.escape(title)}</th>" for title in [first, *titles])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in [label, *cells]) + "</tr>" for label, cells in rows
    )
    return f"<table><tr>{header}</tr>{body}</table>"


def _data_line(result: BenchmarkResult) -> str:
    """How many images of each kind the benchmark used."""
    summary = result.data_summary
    synthetic = summary.get("n_test_synthetic", 0)
    validation = summary.get("n_validation_synthetic", 0)
    return (
        f"{summary['kind']}, {summary['n_train']} normal training images, {summary['n_test']} test images "
        f"({summary['n_test_abnormal']} abnormal"
        + (f", {synthetic} of them synthetic)" if synthetic else ")")
        + (
            f", {validation} synthetic validation images from normal training patients held out from fitting"
            if validation
            else ""
        )
    )


def _png_base64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _thinned(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= CURVE_POINTS:
        return x, y
    keep = np.unique(np.linspace(0, x.size - 1, CURVE_POINTS).round().astype(int))
    return x[keep], y[keep]


def save_curves(result: BenchmarkResult, path: Path) -> None:
    """ROC and PR curves of every method over the pooled tissue pixels of the test images, as one PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.8), dpi=100)
    roc_axes, pr_axes = figure.subplots(1, 2)
    for method in result.methods:
        labels, scores = result.pooled[method.name]
        style = "--" if method.is_reference else "-"
        roc = roc_curve(labels, scores)
        roc_axes.plot(
            *_thinned(roc.fpr, roc.tpr), style, label=f"{method.name} ({_number(method.metrics[HEADLINE])})"
        )
        pr = precision_recall_curve(labels, scores)
        pr_axes.plot(
            *_thinned(pr.recall, pr.precision),
            style,
            label=f"{method.name} ({_number(method.metrics['tissue_pixel_ap_pooled'])})",
        )
    roc_axes.plot([0, 1], [0, 1], ":", color="grey")
    roc_axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, pooled tissue pixels")
    pr_axes.set(xlabel="recall", ylabel="precision", title="Precision-recall, pooled tissue pixels")
    for axes in (roc_axes, pr_axes):
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def save_overlays(result: BenchmarkResult, out_dir: Path, name: str) -> Path | None:
    """Best and worst abnormal test image of method ``name`` (by tissue pixel AUROC) with its map and lesion outline."""
    method = next(m for m in result.methods if m.name == name)
    ranked = sorted((pair for pair in method.per_image if not math.isnan(pair[1])), key=lambda pair: pair[1])
    if not ranked:
        return None
    chosen = [("best", ranked[-1])] if len(ranked) == 1 else [("best", ranked[-1]), ("worst", ranked[0])]
    samples = {sample.name: sample for sample in result.test}
    images, masks, overlays, titles = [], [], [], []
    for which, (sample_name, auroc) in chosen:
        sample = samples[sample_name]
        loaded = sample.load()
        scores = np.load(map_file(out_dir / "maps" / name, sample)).astype(np.float32)
        scores[~loaded.tissue_mask] = np.nan
        images.append(loaded.image)
        masks.append(loaded.lesion_mask)
        overlays.append(scores)
        titles.append(f"{which}: {sample_name} (tissue AUROC {auroc:.3f})")
    path = out_dir / "figures" / f"overlays_{name}.png"
    save_montage(path, images, titles=titles, masks=masks, overlays=overlays, n_columns=2)
    return path


def _row_html(label: str, cells: list[str], status: str, flagged: bool) -> str:
    """One table row: label, cells (already formatted), status; a flagged row is highlighted and marked."""
    status = html.escape(status)
    status = f'<span class="flag">&#9888; {status}</span>' if flagged else status
    tds = "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
    return f"<tr{' class=flagged' if flagged else ''}><td>{html.escape(label)}</td>{tds}<td>{status}</td></tr>"


def metrics_table_html(result: BenchmarkResult) -> str:
    """The metrics table as an HTML table; rows of methods that do not beat the best reference are flagged."""
    header = "".join(f"<th>{html.escape(title)}</th>" for _, title in COLUMNS)
    rows = [
        _row_html(
            method.name,
            [_number(metric(method.metrics, key)) for key, _ in COLUMNS],
            _status(result, method.name, method.beats_references),
            method.beats_references is False,
        )
        for method in result.methods
    ]
    return f"<table><tr><th>method</th>{header}<th>status</th></tr>{''.join(rows)}</table>"


def ablation_tables_html(result: BenchmarkResult) -> str:
    """One HTML table per ablation: its variants, then the references; flagged as in the metrics table."""
    header = "".join(f"<th>{html.escape(title)}</th>" for _, title in ABLATION_COLUMNS)
    tables = []
    for (method, setting), variants in _ablation_groups(result).items():
        rows = [
            _row_html(
                label,
                [
                    *(_number(metric(metrics, key)) for key, _ in ABLATION_COLUMNS),
                    _versus_best_reference(result, metrics),
                ],
                status,
                flagged,
            )
            for label, metrics, status, flagged in _ablation_rows(result, variants)
        ]
        tables.append(
            f"<h3>{html.escape(method)} <code>{html.escape(setting)}</code>: "
            f"{html.escape(_ablation_title(result, method, setting))}</h3>"
            f"<table><tr><th>variant</th>{header}<th>tissue AUROC vs best reference</th><th>status</th>"
            f"</tr>{''.join(rows)}</table>"
        )
    return "".join(tables)


def _numeric(values: list[str]) -> list[float] | None:
    try:
        return [float(value) for value in values]
    except ValueError:
        return None


def save_ablation_curves(result: BenchmarkResult, path: Path) -> bool:
    """Tissue and whole-image pixel AUROC against the value of every numeric ablation (e.g. PICARD's M, its
    Fig. 8), the best reference as a line; one panel each, as one PNG. False (nothing written) when none is
    numeric."""
    from matplotlib.figure import Figure

    numeric = {
        key: (values, variants)
        for key, variants in _ablation_groups(result).items()
        if (values := _numeric([v.value for v in variants])) is not None and len(values) > 1
    }
    if not numeric:
        return False
    best = next(m for m in result.methods if m.name == result.best_reference).metrics
    figure = Figure(figsize=(5.5 * len(numeric), 4.2), dpi=100)
    axes_list = figure.subplots(1, len(numeric), squeeze=False)[0]
    for axes, ((method, setting), (values, variants)) in zip(axes_list, numeric.items()):
        for key, label in ((HEADLINE, "tissue pixel AUROC"), ("pixel_auroc_pooled", "pixel AUROC")):
            axes.plot(values, [v.metrics[key] for v in variants], "o-", label=label)
        axes.axhline(best[HEADLINE], linestyle="--", color="grey",
                     label=f"best reference ({result.best_reference}), tissue")  # fmt: skip
        axes.set(xlabel=setting, ylabel="AUROC", title=f"{method}: {setting}")
        if max(values) / max(min(values), 1e-12) >= 10:
            axes.set_xscale("log")
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return True


def write_html_report(result: BenchmarkResult, out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` with every picture embedded (the PNGs are also kept in ``out_dir/figures``)."""
    out_dir = Path(out_dir)
    curves = out_dir / "figures" / "curves.png"
    save_curves(result, curves)
    warnings = result.data_summary.get("warnings", [])
    sections = [
        *(f'<p class="flag">&#9888; {html.escape(warning)}</p>' for warning in warnings),
        "<h2>Metrics</h2>",
        metrics_table_html(result),
        (
            "<p>Tissue pixel AUROC/AP pool the tissue pixels of all test images. A method that does not beat the best "
            f"trivial reference (<b>{html.escape(result.best_reference)}</b>) on tissue pixel AUROC is flagged "
            "&#9888;: it does not localize anomalies better than intensity alone. Dice is the mean over the abnormal "
            "test images of the map thresholded over the whole image: at the threshold chosen on the synthetic "
            "validation set (no labelled anomaly used; n/a without one), and at the threshold best on the test images "
            "themselves, an optimistic upper bound rather than a result.</p>"
        ),
        "<h2>ROC and precision-recall curves</h2>",
        f'<img alt="curves" src="data:image/png;base64,{_png_base64(curves)}">',
        "<h2>Best and worst test image per method</h2>",
    ]
    for method in result.methods:
        overlay = save_overlays(result, out_dir, method.name)
        if overlay is not None:
            sections.append(
                f"<h3>{html.escape(method.name)}</h3>"
                f'<img alt="{html.escape(method.name)} overlays" '
                f'src="data:image/png;base64,{_png_base64(overlay)}">'
            )
    titles, rows = origin_table(result)
    if rows:
        sections += [
            "<h2>Real vs synthetic anomalies</h2>",
            (
                "<p>The metrics above for the real and for the synthetic abnormal test images apart, each pooled "
                "with the normal test images (so the real columns are what the benchmark gives without "
                "<code>synthetic_test</code>). Synthetic test images are named "
                "<code>..._synthetic{index}_{kind}</code>.</p>"
            ),
            _table_html("method", titles, rows),
        ]
    titles, rows = threshold_table(result)
    if rows:
        sections += [
            "<h2>Label-free Dice threshold (synthetic validation)</h2>",
            (
                f"<p>Each method's threshold maximises its mean Dice on "
                f"{result.data_summary['n_validation_synthetic']} synthetic anomalies inserted into normal "
                "images of training patients held out from fitting (Zimmerer's thesis &sect;5: thresholds "
                "from synthetic validation data, not from labelled anomalies). The test Dice at that threshold "
                "is the result; the Dice at the best test threshold is tuned on the test labels, an optimistic "
                "upper bound. The thesis' Table 3.1 rule, the threshold chosen on the labels of a seeded fifth of "
                "the abnormal test images and the Dice taken on the other four fifths, is optimistic too "
                "(threshold from labelled test images) and is shown for comparison only. Thresholds are in each "
                "method's map units.</p>"
            ),
            _table_html("method", titles, rows),
        ]
    if result.ablations:
        sections += [
            "<h2>Ablations</h2>",
            (
                "<p>Each variant changes one setting of a fitted method and rescores the test images with it; the "
                "variant equal to the method's own setting is the method's row above. Metrics as in the metrics "
                "table; the trivial references close each table, and a variant that does not beat the best one "
                f"(<b>{html.escape(result.best_reference)}</b>) on tissue pixel AUROC is flagged &#9888;. Scores "
                "computed together share one pass over each image, and its time.</p>"
            ),
        ]
        curves = out_dir / "figures" / "ablations.png"
        if save_ablation_curves(result, curves):
            sections.append(f'<img alt="ablation curves" src="data:image/png;base64,{_png_base64(curves)}">')
        sections.append(ablation_tables_html(result))
    lists = ("test_images", "synthetic_test_images", "validation_images", "warnings")
    summary = {key: value for key, value in result.data_summary.items() if key not in lists}
    sections += [
        "<h2>Data</h2>",
        f"<p>{html.escape(_data_line(result))}.</p>",
        f"<pre>{html.escape(json.dumps(summary, indent=1))}</pre>",
        "<p>Test images: " + html.escape(", ".join(result.data_summary["test_images"])) + "</p>",
        "<h2>Configuration</h2>",
        f"<pre>{html.escape(yaml.safe_dump(to_dict(result.config), sort_keys=False))}</pre>",
        "<h2>Resolved method configs</h2>",
        *(
            f"<h3>{html.escape(m.name)}</h3><pre>{html.escape(yaml.safe_dump(m.config, sort_keys=False))}</pre>"
            for m in result.methods
        ),
    ]
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>picard-ad benchmark</title>"
        f"<style>{STYLE}</style></head><body><h1>picard-ad benchmark</h1>{''.join(sections)}</body></html>\n"
    )
    path = out_dir / "report.html"
    atomic_write_text(path, page)
    return path


def write_benchmark_report(result: BenchmarkResult, out_dir: str | Path) -> None:
    """Write ``metrics.json``, ``metrics.md`` and ``report.html`` into ``out_dir``."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "metrics.json", dumps_json(result.to_dict(), indent=1))
    atomic_write_text(out_dir / "metrics.md", metrics_markdown(result))
    write_html_report(result, out_dir)
