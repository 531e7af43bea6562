"""``picard-ad evaluate``: heatmap files, annotations and tissue masks fed to ``evaluate_images``.

The files are matched to the annotations first; how they matched (heatmaps without annotation, annotations
without heatmap) is added to the core's metrics and notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from picard_ad.errors import AnnotationError, ConfigError
from picard_ad.evaluation.config import EvaluationConfig
from picard_ad.evaluation.core import Evaluation, evaluate_images
from picard_ad.evaluation.inputs import (
    AnnotationMatch,
    HeatmapEntry,
    HeatmapFiles,
    ImageLoader,
    find_heatmaps,
)
from picard_ad.io.annotations import image_key, near_misses

_LISTED_IN_NOTES = 10  # names a note lists before pointing to metrics.json for the rest


def _check_entries(
    config: EvaluationConfig, entries: Sequence[HeatmapEntry], loader: ImageLoader
) -> AnnotationMatch:
    """How the heatmaps' sources met the annotations, after refusing a source whose name misses an annotation's by
    letter case, zero padding or separators, and annotations that name no source (``evaluate_images`` refuses two
    heatmaps of one image)."""
    matched = loader.match(entries)
    misses = near_misses(matched.unannotated_sources, matched.annotations_without_heatmap)
    if misses:
        source, name = misses[0]
        more = f" ({len(misses) - 1} more such heatmap sources)" if len(misses) > 1 else ""
        raise AnnotationError(
            loader.annotations.source,
            f"no annotation names heatmap source {source}, which would be scored as a normal image: did you mean "
            f"'{name}'? Name images exactly by their path relative to the annotated root, image suffix aside{more}",
        )
    if len(matched.unannotated_heatmaps) == len(entries):
        named = loader.annotations.names()
        raise AnnotationError(
            loader.annotations.source,
            f"none of the {len(named)} annotated images is the source of a heatmap in {config.heatmaps} "
            f"(annotations name e.g. {named[:3]}; heatmap sources are e.g. "
            f"{[image_key(e.source) for e in entries[:3]]})" if named else "no image is annotated",
        )
    return matched


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED_IN_NOTES])
    return shown if len(names) <= _LISTED_IN_NOTES else f"{shown}, ... (all in metrics.json)"


def _add_matching(metrics: dict[str, Any], notes: list[str], matched: AnnotationMatch) -> None:
    """Heatmaps without annotation and annotations without heatmap: counts and names in metrics and notes."""
    unannotated, orphans = matched.unannotated_heatmaps, matched.annotations_without_heatmap
    metrics.update({
        "n_unannotated_heatmaps": len(unannotated), "unannotated_heatmaps": list(unannotated),
        "n_annotations_without_heatmap": len(orphans), "annotations_without_heatmap": list(orphans),
    })
    if unannotated:
        notes.append(f"heatmaps without annotation, evaluated as normal images: {len(unannotated)} ("
                     f"{_listed(unannotated)})")
    if orphans:
        notes.append(f"annotated images without heatmap, not evaluated: {len(orphans)} ({_listed(orphans)})")


def evaluate(config: EvaluationConfig, progress: bool = False) -> Evaluation:
    """Evaluate the heatmaps of ``config.heatmaps`` against ``config.annotations``; see the package docstring.

    progress: show progress bars. The pooled tissue pixels are not kept (``Evaluation.pooled_tissue`` is None).
    """
    for key in ("heatmaps", "annotations"):
        if getattr(config, key) is None:
            raise ConfigError(f"'{key}' is required (--{key} or '{key}:' in the config file)")
    loader = ImageLoader(config)
    entries = find_heatmaps(config.heatmaps)
    matched = _check_entries(config, entries, loader)
    calibration = None
    if config.calibration:
        calibration_entries = [entry for spec in config.calibration for entry in find_heatmaps(spec)]
        loader.match(calibration_entries)
        calibration = HeatmapFiles(calibration_entries, loader)
    evaluation = evaluate_images(HeatmapFiles(entries, loader), config, calibration=calibration, progress=progress)
    metrics, notes = dict(evaluation.metrics), []
    _add_matching(metrics, notes, matched)
    metrics["notes"] = notes + metrics["notes"]
    return replace(evaluation, metrics=metrics)
