"""The core of every evaluation: per-image and aggregate localization metrics of any ``ImageSource``.

Every pixel metric is computed twice: over the whole image, as the papers report it, and over tissue only, because
dark background that any map scores low inflates whole-image AUROC. Two passes keep memory bounded: the first
loads each image once and keeps small per-image results, the pixels of the pooled AUROC/AP and AUPRO (every k-th
one above the config's limits) and packed masks of lesion images; the second re-reads the heatmaps of lesion
images for Dice. ``picard-ad evaluate`` (``evaluate``) and the benchmark both compute their metrics here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from picard_ad.errors import ConfigError
from picard_ad.evaluation.config import EvaluationConfig
from picard_ad.evaluation.sources import EvaluatedImage, ImageInfo, ImageSource
from picard_ad.io.writers import strict_json
from picard_ad.metrics.lesions import ImageDetections, find_peaks, lesion_sensitivity, match_peaks
from picard_ad.metrics.localization import ImageMetrics, image_level_metrics, pixel_metrics, summarize
from picard_ad.metrics.ranking import average_precision_from_counts, roc_auc_from_counts, threshold_counts
from picard_ad.metrics.regions import ProAccumulator
from picard_ad.metrics.segmentation import (
    best_dice,
    calibrate_threshold,
    dice_at_fifth_of_test_threshold,
    dice_at_threshold,
)

_DICE_SAMPLE_PIXELS = 2_000_000  # pooled pixels whose quantiles are the candidate Dice thresholds
FIFTH_OF_TEST_SEED = 0  # of the choice of the lesion images whose labels pick the fifth-of-test Dice threshold
FIFTH_OF_TEST_NOTE = "optimistic: threshold from labelled test images"
VARIANTS = ("whole", "tissue")


class PooledPixels(NamedTuple):
    """Pixels of all images pooled, for pooled ranking metrics and ROC/PR curves.

    labels: (P,) bool, True on lesion pixels. scores: (P,) heatmap values (the maps' float dtype; float64 when
    they differ). stride: every stride-th pixel of each image in raster order was kept (1: all of them).
    """

    labels: np.ndarray
    scores: np.ndarray
    stride: int


@dataclass(frozen=True)
class Evaluation:
    """Result of an evaluation: aggregate metrics (JSON-ready), one row per image, the FROC curve per variant,
    and the pooled tissue pixels when ``keep_pooled_tissue`` asked for them (else None)."""

    config: EvaluationConfig
    metrics: dict[str, Any]
    rows: list[dict[str, Any]]
    froc: dict[str, Any]
    pooled_tissue: PooledPixels | None = None


# --- pooled pixels ---------------------------------------------------------------------------------------------------


class _Pool:
    """Every stride-th pixel of each image with its lesion and tissue flags."""

    def __init__(self, stride: int):
        self.stride = stride
        self._parts: tuple[list[np.ndarray], ...] = ([], [], [])

    def add(self, image: EvaluatedImage) -> None:
        # Copies: a strided view would keep the whole heatmap (or the file mapped under it) alive.
        for part, array in zip(self._parts, (image.heatmap, image.lesion, image.tissue)):
            part.append(array.ravel()[:: self.stride].copy())

    def metrics(self, keep_tissue: bool) -> tuple[dict[str, tuple[float, float]], PooledPixels | None]:
        """(pixel AUROC, pixel AP) per variant, and the pooled tissue pixels if ``keep_tissue``; empties the pool."""
        scores, lesion, tissue = (np.concatenate(part) for part in self._parts)
        # Dropping the parts halves the peak memory of the sorts below.
        self._parts = ([], [], [])
        pooled = {
            "whole": PooledPixels(lesion, scores, self.stride),
            "tissue": PooledPixels(lesion[tissue], scores[tissue], self.stride),
        }
        ranking = {}
        for variant, pixels in pooled.items():
            counts = threshold_counts(pixels.labels, pixels.scores)
            ranking[variant] = (roc_auc_from_counts(counts), average_precision_from_counts(counts))
        return ranking, pooled["tissue"] if keep_tissue else None


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
    """What the Dice pass keeps of a lesion image: its index in the source, identity and bit-packed masks."""

    index: int
    identity: str
    shape: tuple[int, int]
    lesion_bits: np.ndarray
    tissue_bits: np.ndarray

    @classmethod
    def of(cls, index: int, image: EvaluatedImage) -> _LesionImage:
        return cls(index, image.info.identity, image.lesion.shape, np.packbits(image.lesion), np.packbits(image.tissue))

    def _mask(self, bits: np.ndarray) -> np.ndarray:
        return np.unpackbits(bits, count=self.shape[0] * self.shape[1]).reshape(self.shape).astype(bool)

    def heatmap(self, source: ImageSource, variant: str) -> np.ndarray:
        """The heatmap, (H, W) for "whole", 1-D over tissue pixels for "tissue"."""
        heatmap = source.heatmap(self.index)
        return heatmap if variant == "whole" else heatmap[self._mask(self.tissue_bits)]

    def lesion(self, variant: str) -> np.ndarray:
        """The lesion mask, shaped as ``heatmap(variant)``."""
        lesion = self._mask(self.lesion_bits)
        return lesion if variant == "whole" else lesion[self._mask(self.tissue_bits)]


class _DiceSplit:
    """Lesion images of one split with a pooled pixel sample per variant, for Dice threshold candidates."""

    def __init__(self, source: ImageSource, total_pixels: int):
        self.source = source
        self.stride = max(1, -(-total_pixels // _DICE_SAMPLE_PIXELS))
        self.images: dict[str, list[_LesionImage]] = {variant: [] for variant in VARIANTS}
        self.samples: dict[str, list[np.ndarray]] = {variant: [] for variant in VARIANTS}

    def add(self, index: int, image: EvaluatedImage) -> None:
        if not image.lesion.any():
            return
        kept = _LesionImage.of(index, image)
        # Copies: a strided view would keep the whole heatmap (or its tissue pixels) alive.
        self.images["whole"].append(kept)
        self.samples["whole"].append(image.heatmap.ravel()[:: self.stride].copy())
        if (image.lesion & image.tissue).any():
            self.images["tissue"].append(kept)
            self.samples["tissue"].append(image.heatmap[image.tissue][:: self.stride].copy())

    def inputs(self, variant: str, n_candidates: int) -> dict[str, Any]:
        """Keyword arguments (heatmaps, masks, names, candidates) of the segmentation metrics."""
        images = self.images[variant]
        pooled = np.concatenate(self.samples[variant]).astype(np.float64)
        return {
            "heatmaps": _Lazy(len(images), lambda i: images[i].heatmap(self.source, variant)),
            "masks": _Lazy(len(images), lambda i: images[i].lesion(variant)),
            "names": [image.identity for image in images],
            "candidates": np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, n_candidates))),
        }


def _infos(source: ImageSource, split: str) -> list[ImageInfo]:
    """Every image's info, after refusing an empty split and two entries of one image."""
    infos = [source.info(index) for index in range(len(source))]
    if not infos:
        raise ConfigError(f"the {split} split holds no image")
    seen: dict[str, str] = {}
    for info in infos:
        if info.identity in seen:
            raise ConfigError(f"{split} images {seen[info.identity]} and {info.name} are the same image "
                              f"({info.identity}); evaluate each image once")
        seen[info.identity] = info.name
    return infos


def _pixel_count(infos: Sequence[ImageInfo]) -> int:
    return sum(info.shape[0] * info.shape[1] for info in infos)


def _calibrate(calibration: ImageSource, test: Sequence[ImageInfo], config: EvaluationConfig, progress: bool):
    """Dice threshold per variant chosen on the calibration split, after refusing any test image in it."""
    infos = _infos(calibration, "calibration")
    shared = sorted({info.identity for info in infos} & {info.identity for info in test})
    if shared:
        raise ConfigError(
            f"the calibration split holds {len(shared)} test image(s); the Dice threshold must come from other "
            f"images: {', '.join(shared[:5])}{' ...' if len(shared) > 5 else ''}"
        )
    split = _DiceSplit(calibration, _pixel_count(infos))
    for index in _bar(range(len(calibration)), progress, "calibration"):
        split.add(index, calibration.load(index))
    calibrations = {}
    for variant in VARIANTS:
        if not split.images[variant]:
            raise ConfigError(f"calibration split: no image has lesion pixels{' in tissue' * (variant == 'tissue')}")
        calibrations[variant] = calibrate_threshold(**split.inputs(variant, config.dice_candidates))
    return calibrations


def _bar(items: Sequence, progress: bool, what: str):
    from tqdm import tqdm

    return tqdm(items, unit="image", desc=what, disable=not progress or len(items) < 2, dynamic_ncols=True)


# --- the core --------------------------------------------------------------------------------------------------------


def _given_scores(image_scores: Sequence[float], n_images: int) -> np.ndarray:
    scores = np.asarray(image_scores, dtype=np.float64)
    if scores.shape != (n_images,) or not np.all(np.isfinite(scores)):
        raise ValueError(f"image_scores must be {n_images} finite numbers, one per image, got shape {scores.shape}")
    return scores


def _image_score(image: EvaluatedImage, quantile: float) -> float:
    pixels = image.heatmap[image.tissue] if image.tissue.any() else image.heatmap
    return float(np.quantile(pixels, quantile))


def evaluate_images(
    images: ImageSource,
    config: EvaluationConfig,
    *,
    calibration: ImageSource | None = None,
    image_scores: Sequence[float] | None = None,
    keep_pooled_tissue: bool = False,
    progress: bool = False,
) -> Evaluation:
    """Per-image and aggregate localization metrics of ``images``, over the whole image and over tissue only.

    images: the test images. config: how each metric is computed (its input fields, heatmaps to calibration, are
    not read here). calibration: other images, on which the Dice threshold is chosen; None: no calibrated Dice.
    image_scores: (N,) finite image-level anomaly scores, one per image of ``images`` (e.g. a method's own);
    None: the ``config.image_score_quantile`` quantile of each image's tissue heatmap. keep_pooled_tissue: keep
    the pooled tissue pixels (``Evaluation.pooled_tissue``) for ROC/PR curves. progress: show progress bars.

    Raises:
        ConfigError: an empty split, an image twice in a split, or a test image in the calibration split.
        ValueError: ``image_scores`` not one finite number per image; an image's arrays not of one (H, W) shape.
    """
    infos = _infos(images, "test")
    given = None if image_scores is None else _given_scores(image_scores, len(infos))
    calibrations = None if calibration is None else _calibrate(calibration, infos, config, progress)

    total_pixels = _pixel_count(infos)
    pro_stride = max(1, math.ceil(math.sqrt(total_pixels / config.aupro_max_pixels)))
    pro = {variant: ProAccumulator(pro_stride) for variant in VARIANTS}
    pool = _Pool(max(1, math.ceil(total_pixels / config.pooled_max_pixels)))
    dice_split = _DiceSplit(images, total_pixels)
    per_image: dict[str, list[ImageMetrics]] = {variant: [] for variant in VARIANTS}
    detections: dict[str, list[ImageDetections]] = {variant: [] for variant in VARIANTS}
    scores, abnormal, rows = [], [], []
    for index in _bar(range(len(infos)), progress, "evaluate"):
        image = images.load(index)
        name = image.info.name
        for variant, region in (("whole", None), ("tissue", image.tissue)):
            per_image[variant].append(pixel_metrics(image.heatmap, image.lesion, region, name=name))
            pro[variant].add(image.heatmap, image.lesion, region, name=name)
            peaks = find_peaks(image.heatmap, config.peak_radius, region)
            detections[variant].append(
                match_peaks(peaks, image.lesions, config.hit_min_distance, config.lesion_size_measure, name)
            )
        pool.add(image)
        dice_split.add(index, image)
        scores.append(_image_score(image, config.image_score_quantile) if given is None else float(given[index]))
        abnormal.append(bool(image.lesion.any()))
        rows.append(_row(image, per_image, detections, scores[-1]))

    metrics: dict[str, Any] = {"n_images": len(infos), "n_abnormal": sum(abnormal),
                               "n_normal": len(infos) - sum(abnormal)}
    notes: list[str] = []
    pooled, pooled_tissue = pool.metrics(keep_pooled_tissue)
    froc = {}
    for variant in VARIANTS:
        prefix = "" if variant == "whole" else "tissue_"
        summary = summarize(per_image[variant])
        metrics.update({
            f"{prefix}pixel_auroc_mean": summary.mean_pixel_auroc,
            f"{prefix}pixel_auroc_median": summary.median_pixel_auroc,
            f"{prefix}pixel_ap_mean": summary.mean_pixel_ap,
            f"{prefix}pixel_ap_median": summary.median_pixel_ap,
            f"{prefix}pixel_auroc_pooled": pooled[variant][0],
            f"{prefix}pixel_ap_pooled": pooled[variant][1],
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
    metrics["pooled_stride"] = pool.stride
    if pool.stride > 1:
        notes.append(f"pooled pixel AUROC/AP took 1 pixel in {pool.stride} of each image, in raster order "
                     f"({total_pixels} pixels in all, above pooled_max_pixels = {config.pooled_max_pixels})")
    metrics["aupro_fpr_limit"] = config.aupro_fpr_limit
    metrics["aupro_stride"] = pro_stride
    if pro_stride > 1:
        notes.append(f"AUPRO sampled the {total_pixels} pixels with stride {pro_stride} in rows and columns")
    if pro["tissue"].n_regions_unseen:
        notes.append(f"tissue: {pro['tissue'].n_regions_unseen} lesion regions have no tissue pixel and are left "
                     "out of the tissue AUPRO")
    no_tissue = [row["name"] for row in rows if row["tissue_pixels"] == 0]
    if no_tissue:
        score_from = " (image score from the whole heatmap)" if given is None else ""
        notes.append(f"{len(no_tissue)} images have an empty tissue mask{score_from}: " + ", ".join(no_tissue))
    metrics["image_score_quantile"] = config.image_score_quantile if given is None else None
    if given is not None:
        notes.append("image scores were given with the images (e.g. the method's own), not heatmap quantiles")
    metrics.update(image_level_metrics(np.array(scores, dtype=np.float64), np.array(abnormal)))
    if not (0 < sum(abnormal) < len(infos)):
        notes.append("image-level AUROC/AP need both normal and abnormal images; undefined here")
    metrics["notes"] = notes
    return Evaluation(config, strict_json(metrics), rows, froc, pooled_tissue)


def _add_dice(metrics, notes, variant, prefix, split: _DiceSplit, calibrations, config, rows) -> None:
    images = split.images[variant]
    if not images:
        metrics[f"{prefix}dice"] = metrics[f"{prefix}best_dice_optimistic"] = None
        metrics[f"{prefix}dice_fifth_of_test_optimistic"] = None
        notes.append(f"{variant}: no image with lesion pixels, so no Dice")
        return
    inputs = split.inputs(variant, config.dice_candidates)
    best = best_dice(**inputs)
    metrics[f"{prefix}best_dice_optimistic"] = {
        "mean": best.mean_dice, "threshold": best.threshold, "n_images": len(images),
        "note": "threshold tuned on the evaluated images themselves: an optimistic upper bound, not a result",
    }
    metrics[f"{prefix}dice_fifth_of_test_optimistic"] = None
    if len(images) >= 2:
        fifth, rest = dice_at_fifth_of_test_threshold(**inputs, seed=FIFTH_OF_TEST_SEED)
        metrics[f"{prefix}dice_fifth_of_test_optimistic"] = {
            "mean": rest.mean_dice, "threshold": fifth.threshold, "n_images": len(rest.image_names),
            "n_threshold_images": len(fifth.image_names),
            "note": f"{FIFTH_OF_TEST_NOTE} (a seeded fifth of the lesion images, Zimmerer's Table 3.1 rule); Dice "
                    "on the other four fifths; never used to choose anything",
        }  # fmt: skip
    elif variant == "whole":
        notes.append("one image with lesion pixels: no Dice at a fifth-of-test threshold (it needs a fifth and the "
                     "rest)")  # fmt: skip
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


def _row(image: EvaluatedImage, per_image, detections, score: float) -> dict[str, Any]:
    whole, tissue = per_image["whole"][-1], per_image["tissue"][-1]
    return {
        "name": image.info.name, **image.info.fields, "identity": image.info.identity,
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
