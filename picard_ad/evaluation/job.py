"""The evaluation job: per-image and aggregate metrics over the whole image and over tissue only."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from picard_ad.errors import AnnotationError, ConfigError, InputError
from picard_ad.evaluation.inputs import (
    AnnotationMatch,
    HeatmapEntry,
    ImageLoader,
    LoadedImage,
    find_heatmaps,
    read_heatmap,
)
from picard_ad.io import read_header
from picard_ad.io.annotations import image_key, near_misses
from picard_ad.metrics.lesions import (
    find_peaks,
    lesion_sensitivity,
    match_peaks,
)
from picard_ad.metrics.localization import (
    image_level_metrics,
    json_ready,
    pixel_metrics,
    summarize,
)
from picard_ad.metrics.regions import ProAccumulator
from picard_ad.metrics.segmentation import (
    best_dice,
    calibrate_threshold,
    dice_at_threshold,
)

_DICE_SAMPLE_PIXELS = 2_000_000  # pooled pixels whose quantiles are the candidate Dice thresholds
_LISTED_IN_NOTES = 10  # names a note lists before pointing to metrics.json for the rest
VARIANTS = ("whole", "tissue")


@dataclass(frozen=True)
class EvaluationConfig:
    """Settings of ``picard-ad evaluate``; YAML keys and flags share these names. Lengths in pixels.

    annotations: a folder of mask images, a boxes CSV (image,x,y,width,height), a circles CSV (image,x,y,radius),
        or ``bcs-dbt:BOXES.csv,FILE_PATHS.csv[,ROOT]``. Annotations name images by their path relative to the
        annotated root (a bare file name does when it is not ambiguous). Images without annotation are normal;
        they, and annotated images without heatmap, are listed in the metrics.
    tissue_threshold / tissue_masks: tissue is ``tissue_mask(source, tissue_threshold)`` (default 0.02), or read
        from a folder of masks named like the images; not both.
    calibration: heatmap folders, heatmap files, or text files listing them (one per line), of images that are
        not test images: the Dice threshold is chosen there.
    image_score_quantile: image score of a heatmap = this quantile of its tissue pixels.
    aupro_max_pixels: above this many pixels in all, AUPRO evaluates every k-th row and column (k reported).
    peak_radius: non-maximum suppression radius of heatmap peaks. hit_min_distance: DBTex floor of the hit radius.
    lesion_size_bins: inner edges of the lesion size bins, px (diagonal) or px^2 (area).
    """

    heatmaps: str | None = None
    annotations: str | None = None
    out: str | None = None
    tissue_threshold: float | None = None
    tissue_masks: str | None = None
    calibration: str | tuple[str, ...] = ()
    image_score_quantile: float = 0.99
    aupro_fpr_limit: float = 0.3
    aupro_max_pixels: int = 50_000_000
    dice_candidates: int = 100
    peak_radius: float = 100.0
    hit_min_distance: float = 100.0
    fp_rates: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    lesion_size_measure: Literal["diagonal", "area"] = "diagonal"
    lesion_size_bins: tuple[float, ...] = (100.0, 200.0, 400.0)

    def __post_init__(self) -> None:
        if isinstance(self.calibration, str):
            object.__setattr__(self, "calibration", (self.calibration,))
        if self.tissue_masks is not None and self.tissue_threshold is not None:
            raise ConfigError("give tissue_threshold or tissue_masks, not both")
        if self.tissue_masks is None and self.tissue_threshold is None:
            object.__setattr__(self, "tissue_threshold", 0.02)
        checks = [
            (0.0 <= self.image_score_quantile <= 1.0, "image_score_quantile must be in [0, 1]"),
            (0.0 < self.aupro_fpr_limit <= 1.0, "aupro_fpr_limit must be in (0, 1]"),
            (self.aupro_max_pixels >= 1, "aupro_max_pixels must be at least 1"),
            (self.dice_candidates >= 1, "dice_candidates must be at least 1"),
            (self.peak_radius >= 1, "peak_radius must be at least 1 pixel"),
            (self.hit_min_distance >= 0, "hit_min_distance must be non-negative"),
            (bool(self.fp_rates) and all(r >= 0 for r in self.fp_rates), "fp_rates must be non-negative numbers"),
            (list(self.lesion_size_bins) == sorted(set(self.lesion_size_bins)), "lesion_size_bins must ascend"),
            (all(edge > 0 for edge in self.lesion_size_bins), "lesion_size_bins must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


# --- Dice over lesion images, re-reading heatmaps one at a time ---------------------------------------------------


class _Lazy(Sequence):
    """Read-only sequence whose item i is computed on access, so one image at a time is held in memory."""

    def __init__(self, length: int, get: Callable[[int], Any]):
        self._length, self._get = length, get

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        if not -self._length <= index < self._length:
            raise IndexError(index)
        return self._get(index % self._length)


@dataclass(frozen=True)
class _LesionImage:
    """What the Dice pass keeps of a lesion image: its entry and bit-packed lesion and tissue masks."""

    entry: HeatmapEntry
    shape: tuple[int, int]
    lesion_bits: np.ndarray
    tissue_bits: np.ndarray

    @classmethod
    def of(cls, entry: HeatmapEntry, image: LoadedImage) -> _LesionImage:
        return cls(entry, image.lesion.shape, np.packbits(image.lesion), np.packbits(image.tissue))

    def _mask(self, bits: np.ndarray) -> np.ndarray:
        return np.unpackbits(bits, count=self.shape[0] * self.shape[1]).reshape(self.shape).astype(bool)

    def heatmap(self, variant: str) -> np.ndarray:
        """The heatmap, (H, W) for "whole", 1-D over tissue pixels for "tissue"."""
        heatmap = read_heatmap(self.entry)
        return heatmap if variant == "whole" else heatmap[self._mask(self.tissue_bits)]

    def lesion(self, variant: str) -> np.ndarray:
        """The lesion mask, shaped as ``heatmap(variant)``."""
        lesion = self._mask(self.lesion_bits)
        return lesion if variant == "whole" else lesion[self._mask(self.tissue_bits)]


class _DiceSplit:
    """Lesion images of one split with a pooled pixel sample per variant, for Dice threshold candidates."""

    def __init__(self, total_pixels: int):
        self.stride = max(1, -(-total_pixels // _DICE_SAMPLE_PIXELS))
        self.images: dict[str, list[_LesionImage]] = {variant: [] for variant in VARIANTS}
        self.samples: dict[str, list[np.ndarray]] = {variant: [] for variant in VARIANTS}

    def add(self, entry: HeatmapEntry, image: LoadedImage) -> None:
        if not image.lesion.any():
            return
        kept = _LesionImage.of(entry, image)
        self.images["whole"].append(kept)
        self.samples["whole"].append(image.heatmap.ravel()[:: self.stride])
        if (image.lesion & image.tissue).any():
            self.images["tissue"].append(kept)
            self.samples["tissue"].append(image.heatmap[image.tissue][:: self.stride])

    def inputs(self, variant: str, n_candidates: int) -> dict[str, Any]:
        """Keyword arguments (heatmaps, masks, names, candidates) of the segmentation metrics."""
        images = self.images[variant]
        pooled = np.concatenate(self.samples[variant]).astype(np.float64)
        return {
            "heatmaps": _Lazy(len(images), lambda i: images[i].heatmap(variant)),
            "masks": _Lazy(len(images), lambda i: images[i].lesion(variant)),
            "names": [image.entry.identity for image in images],
            "candidates": np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, n_candidates))),
        }


def _pixel_count(entries: Sequence[HeatmapEntry]) -> int:
    return sum(header.rows * header.cols for header in (read_header(entry.source) for entry in entries))


def _calibrate(config: EvaluationConfig, loader: ImageLoader, test: Sequence[HeatmapEntry], progress: bool):
    """Dice threshold per variant chosen on the calibration split, after refusing any test image in it."""
    entries = [entry for spec in config.calibration for entry in find_heatmaps(spec)]
    shared = sorted({entry.identity for entry in entries} & {entry.identity for entry in test})
    if shared:
        raise ConfigError(
            f"the calibration split holds {len(shared)} test image(s); the Dice threshold must come from other "
            f"images: {', '.join(shared[:5])}{' ...' if len(shared) > 5 else ''}"
        )
    loader.match(entries)
    split = _DiceSplit(_pixel_count(entries))
    for entry in _bar(entries, progress, "calibration"):
        split.add(entry, loader.load(entry))
    calibrations = {}
    for variant in VARIANTS:
        if not split.images[variant]:
            raise ConfigError(f"calibration split: no image has lesion pixels{' in tissue' * (variant == 'tissue')}")
        calibrations[variant] = calibrate_threshold(**split.inputs(variant, config.dice_candidates))
    return calibrations


def _bar(items: Sequence, progress: bool, what: str):
    from tqdm import tqdm

    return tqdm(items, unit="image", desc=what, disable=not progress or len(items) < 2, dynamic_ncols=True)


# --- the job -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """Result of ``evaluate``: aggregate metrics (JSON-ready), one row per image, and the FROC curves."""

    config: EvaluationConfig
    metrics: dict[str, Any]
    rows: list[dict[str, Any]]
    froc: dict[str, Any]


def _check_entries(
    config: EvaluationConfig, entries: Sequence[HeatmapEntry], loader: ImageLoader
) -> AnnotationMatch:
    """How the heatmaps' sources met the annotations, after refusing two heatmaps of one image, a source whose
    name misses an annotation's by letter case, zero padding or separators, and annotations that name no source."""
    seen: dict[str, HeatmapEntry] = {}
    for entry in entries:
        if entry.identity in seen:
            raise InputError(entry.heatmap_path, f"maps the same image as {seen[entry.identity].heatmap_path} "
                             f"({entry.identity}); evaluate one heatmap per image")
        seen[entry.identity] = entry
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


def _image_score(image: LoadedImage, quantile: float) -> float:
    pixels = image.heatmap[image.tissue] if image.tissue.any() else image.heatmap
    return float(np.quantile(pixels, quantile))


def evaluate(config: EvaluationConfig, progress: bool = False) -> Evaluation:
    """Evaluate the heatmaps of ``config.heatmaps`` against ``config.annotations``; see the module docstring."""
    for key in ("heatmaps", "annotations"):
        if getattr(config, key) is None:
            raise ConfigError(f"'{key}' is required (--{key} or '{key}:' in the config file)")
    loader = ImageLoader(config)
    entries = find_heatmaps(config.heatmaps)
    matched = _check_entries(config, entries, loader)
    calibrations = _calibrate(config, loader, entries, progress) if config.calibration else None

    total_pixels = _pixel_count(entries)
    pro_stride = max(1, math.ceil(math.sqrt(total_pixels / config.aupro_max_pixels)))
    pro = {variant: ProAccumulator(pro_stride) for variant in VARIANTS}
    dice_split = _DiceSplit(total_pixels)
    per_image: dict[str, list] = {"whole": [], "tissue": []}
    detections: dict[str, list] = {"whole": [], "tissue": []}
    scores, abnormal, rows = [], [], []
    for entry in _bar(entries, progress, "evaluate"):
        image = loader.load(entry)
        regions = {"whole": None, "tissue": image.tissue}
        for variant, region in regions.items():
            per_image[variant].append(pixel_metrics(image.heatmap, image.lesion, region, name=entry.name))
            pro[variant].add(image.heatmap, image.lesion, region, name=entry.name)
            peaks = find_peaks(image.heatmap, config.peak_radius, region)
            detections[variant].append(
                match_peaks(peaks, image.lesions, config.hit_min_distance, config.lesion_size_measure, entry.name)
            )
        dice_split.add(entry, image)
        scores.append(_image_score(image, config.image_score_quantile))
        abnormal.append(bool(image.lesion.any()))
        rows.append(_row(entry, image, per_image, detections, scores[-1]))

    metrics: dict[str, Any] = {"n_images": len(entries), "n_abnormal": sum(abnormal),
                               "n_normal": len(entries) - sum(abnormal)}
    notes: list[str] = []
    _add_matching(metrics, notes, matched)
    froc = {}
    for variant in VARIANTS:
        prefix = "" if variant == "whole" else "tissue_"
        summary = summarize(per_image[variant])
        metrics.update({
            f"{prefix}pixel_auroc_mean": summary.mean_pixel_auroc,
            f"{prefix}pixel_auroc_median": summary.median_pixel_auroc,
            f"{prefix}pixel_ap_mean": summary.mean_pixel_ap,
            f"{prefix}pixel_ap_median": summary.median_pixel_ap,
            f"{prefix}inside_outside_ratio_mean": summary.mean_ratio,
            f"{prefix}inside_outside_ratio_median": summary.median_ratio,
            f"{prefix}n_scored": summary.n_scored,
            f"{prefix}aupro": pro[variant].aupro(config.aupro_fpr_limit),
        })
        notes.extend(f"{variant}: {note}" for note in summary.notes)
        sensitivity = lesion_sensitivity(
            detections[variant], config.fp_rates, config.lesion_size_bins, config.lesion_size_measure
        )
        froc[variant] = sensitivity.curve
        metrics[f"{prefix}lesion_sensitivity"] = sensitivity.to_dict()
        metrics[f"{prefix}summary"] = summary.to_dict()
        _add_dice(metrics, notes, variant, prefix, dice_split, calibrations, config, rows)
    metrics["aupro_fpr_limit"] = config.aupro_fpr_limit
    metrics["aupro_stride"] = pro_stride
    if pro_stride > 1:
        notes.append(f"AUPRO sampled the {total_pixels} pixels with stride {pro_stride} in rows and columns")
    if pro["tissue"].n_regions_unseen:
        notes.append(f"tissue: {pro['tissue'].n_regions_unseen} lesion regions have no tissue pixel and are left "
                     "out of the tissue AUPRO")
    no_tissue = [row["name"] for row in rows if row["tissue_pixels"] == 0]
    if no_tissue:
        notes.append(f"{len(no_tissue)} images have an empty tissue mask (image score from the whole heatmap): "
                     + ", ".join(no_tissue))
    metrics["image_score_quantile"] = config.image_score_quantile
    metrics.update(image_level_metrics(np.array(scores, dtype=np.float64), np.array(abnormal)))
    if not (0 < sum(abnormal) < len(entries)):
        notes.append("image-level AUROC/AP need both normal and abnormal images; undefined here")
    metrics["notes"] = notes
    return Evaluation(config, json_ready(metrics), rows, froc)


def _add_dice(metrics, notes, variant, prefix, split: _DiceSplit, calibrations, config, rows) -> None:
    images = split.images[variant]
    if not images:
        metrics[f"{prefix}dice"] = metrics[f"{prefix}best_dice_optimistic"] = None
        notes.append(f"{variant}: no image with lesion pixels, so no Dice")
        return
    inputs = split.inputs(variant, config.dice_candidates)
    best = best_dice(**inputs)
    metrics[f"{prefix}best_dice_optimistic"] = {
        "mean": best.mean_dice, "threshold": best.threshold, "n_images": len(images),
        "note": "threshold tuned on the evaluated images themselves: an optimistic upper bound, not a result",
    }
    if calibrations is None:
        metrics[f"{prefix}dice"] = None
        if variant == "whole":
            notes.append("no calibration split given (--calibration), so no Dice at a calibrated threshold")
        return
    del inputs["candidates"]
    result = dice_at_threshold(calibrations[variant], **inputs)
    metrics[f"{prefix}dice"] = {
        "mean": result.mean_dice, "threshold": result.threshold, "n_images": len(images),
        "n_calibration_images": len(calibrations[variant].image_names),
        "calibration_mean_dice": calibrations[variant].mean_dice,
    }
    by_identity = dict(zip(result.image_names, result.image_dice))
    for row in rows:
        row[f"{prefix}dice"] = by_identity.get(row["identity"], math.nan)
    if variant == "whole":
        notes.append("Dice is averaged over images with lesion pixels (tissue: with lesion pixels in tissue)")


def _row(entry: HeatmapEntry, image: LoadedImage, per_image, detections, score: float) -> dict[str, Any]:
    whole, tissue = per_image["whole"][-1], per_image["tissue"][-1]
    return {
        "name": entry.name, "source": str(entry.source), "slice_index": entry.slice_index,
        "heatmap": str(entry.heatmap_path), "identity": entry.identity,
        "height": image.heatmap.shape[0], "width": image.heatmap.shape[1],
        "abnormal": int(image.lesion.any()), "n_lesions": len(image.lesions),
        "lesion_pixels": whole.n_positive, "tissue_pixels": tissue.n_pixels,
        "tissue_lesion_pixels": tissue.n_positive, "pixel_auroc": whole.pixel_auroc, "pixel_ap": whole.pixel_ap,
        "inside_outside_ratio": whole.inside_outside_ratio,
        "tissue_pixel_auroc": tissue.pixel_auroc, "tissue_pixel_ap": tissue.pixel_ap,
        "tissue_inside_outside_ratio": tissue.inside_outside_ratio,
        "image_score": score, "dice": math.nan, "tissue_dice": math.nan,
        "n_peaks": detections["whole"][-1].n_peaks, "tissue_n_peaks": detections["tissue"][-1].n_peaks,
    }
