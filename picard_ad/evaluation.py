"""The job behind ``picard-ad evaluate``: heatmaps + annotations + tissue masks -> per-image and aggregate metrics.

Heatmap contract (what ``picard-ad heatmap`` writes; another method's maps are evaluated if written the same way):
every ``NAME_heatmap.npy`` (one (H, W) float map) or ``NAME_heatmap.nii.gz`` (slice i is ``data[:, :, i]``)
under the heatmaps folder has a sidecar ``NAME.json`` beside it holding ``"input"``, the source image path
(absolute, or relative to the sidecar's folder or to the working folder; ``"key": {"input": {"path"}}``, the
absolute path ``picard-ad heatmap`` records, is tried last), and ``"slices": [{"slice_index": i}, ...]``, the
source slices the heatmap holds (may be left out for a 2-D image: slice 0). The heatmap lies in the source's
stored orientation, at its resolution.

Every pixel metric is computed twice: over the whole image, as the papers report it, and over tissue only
(``tissue_mask`` of the source image, or given masks), because dark background that any map scores low inflates
whole-image AUROC. Two passes keep memory bounded: the first reads each image once and keeps only small
per-image results (and packed masks of lesion images); the second re-reads the heatmaps of lesion images for
Dice. Outputs: ``metrics.json``, ``per_image.csv``, ``metrics.md``, ``froc.csv`` and the resolved
``config.yaml``, each written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from picard_ad.config import save_config
from picard_ad.data.tissue import tissue_mask
from picard_ad.errors import AnnotationError, ConfigError, CorruptFileError, InputError
from picard_ad.io import read_header, read_image
from picard_ad.io.annotations import AnnotationSet, Box, image_key
from picard_ad.io.writers import atomic_write_text
from picard_ad.metrics.lesions import (
    find_peaks,
    lesion_sensitivity,
    lesions_from_mask,
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

_HEATMAP_SUFFIXES = ("_heatmap.npy", "_heatmap.nii.gz")
_DICE_SAMPLE_PIXELS = 2_000_000  # pooled pixels whose quantiles are the candidate Dice thresholds
VARIANTS = ("whole", "tissue")


@dataclass(frozen=True)
class EvaluationConfig:
    """Settings of ``picard-ad evaluate``; YAML keys and flags share these names. Lengths in pixels.

    annotations: a folder of mask images, a boxes CSV (image,x,y,width,height), a circles CSV (image,x,y,radius),
        or ``bcs-dbt:BOXES.csv,FILE_PATHS.csv[,ROOT]``. Images without annotation are normal.
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


# --- heatmaps and their sources ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeatmapEntry:
    """One evaluated image: a heatmap file (and slice of it, for volumes) and the source image slice it maps."""

    name: str
    heatmap_path: Path
    volume_slice: int | None  # index along axis 2 of a NIfTI heatmap; None for a 2-D .npy heatmap
    source: Path
    slice_index: int

    @property
    def identity(self) -> str:
        """The source image slice, resolved: equal for two entries of the same image."""
        return f"{self.source.resolve()}[{self.slice_index}]"


def _unit_name(heatmap: Path) -> str:
    return next(heatmap.name[: -len(s)] for s in _HEATMAP_SUFFIXES if heatmap.name.endswith(s))


def _source_of(sidecar: Path, data: dict[str, Any]) -> Path:
    given = data.get("input")
    if not isinstance(given, str):
        raise InputError(sidecar, "sidecar has no 'input' (the source image path)")
    path = Path(given)
    tried = [path] if path.is_absolute() else [sidecar.parent / path, Path.cwd() / path]
    recorded = data.get("key", {}).get("input", {}).get("path") if isinstance(data.get("key"), dict) else None
    if isinstance(recorded, str):
        tried.append(Path(recorded))
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise InputError(sidecar, f"source image not found (tried {', '.join(str(p) for p in tried)})")


def _entries_of(heatmap: Path, name: str) -> list[HeatmapEntry]:
    sidecar = heatmap.with_name(_unit_name(heatmap) + ".json")
    if not sidecar.is_file():
        raise InputError(heatmap, f"no sidecar {sidecar.name} beside the heatmap (it names the source image)")
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(sidecar, f"not readable as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(sidecar, "expected a JSON object")
    source = _source_of(sidecar, data)
    slices = data.get("slices", [{"slice_index": 0}])
    indices = [item.get("slice_index") for item in slices if isinstance(item, dict)] if isinstance(slices, list) else []
    if not indices or len(indices) != len(slices) or any(
        isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in indices
    ):
        raise InputError(sidecar, "'slices' must list objects with a non-negative integer 'slice_index'")
    if heatmap.name.endswith(".npy"):
        if len(indices) != 1:
            raise InputError(sidecar, f"a .npy heatmap holds one slice, but the sidecar lists {len(indices)}")
        return [HeatmapEntry(name, heatmap, None, source, indices[0])]
    return [HeatmapEntry(f"{name}_s{i:04d}", heatmap, i, source, i) for i in indices]


def find_heatmaps(spec: str | Path) -> list[HeatmapEntry]:
    """Entries of a heatmaps folder (searched recursively), a single heatmap file, or a text file listing them.

    Names are the heatmap's path relative to the folder without ``_heatmap.*`` (``_sNNNN`` added per volume slice).
    """
    path = Path(spec)
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.name.endswith(_HEATMAP_SUFFIXES) and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise InputError(path, "no heatmaps (*_heatmap.npy or *_heatmap.nii.gz) in the folder")
        return [e for f in files for e in _entries_of(f, (f.parent.relative_to(path) / _unit_name(f)).as_posix())]
    if not path.is_file():
        raise InputError(path, "heatmaps not found: expected a folder, a heatmap file or a list file")
    if path.name.endswith(_HEATMAP_SUFFIXES):
        return _entries_of(path, _unit_name(path))
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError):
        raise InputError(path, "not a heatmap (*_heatmap.npy, *_heatmap.nii.gz) nor a text file listing them") from None
    listed = [path.parent / line for line in lines if line and not line.startswith("#")]
    if not listed:
        raise InputError(path, "the list names no heatmap file or folder")
    return [entry for item in listed for entry in find_heatmaps(item)]


def read_heatmap(entry: HeatmapEntry) -> np.ndarray:
    """The (H, W) heatmap of an entry, finite, in its stored float dtype (integers become float64)."""
    path = entry.heatmap_path
    try:
        if entry.volume_slice is None:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            array = _nifti_slice(path, entry.volume_slice)
    except (OSError, ValueError, EOFError) as exc:
        raise CorruptFileError(path, f"cannot read the heatmap ({exc})") from None
    except Exception as exc:  # nibabel's own errors for damaged or non-NIfTI files
        raise CorruptFileError(path, f"cannot read the heatmap ({type(exc).__name__}: {exc})") from None
    if array.ndim != 2 or array.dtype.kind not in "iuf":
        raise CorruptFileError(path, f"expected an (H, W) real-valued heatmap, got {array.dtype} {array.shape}")
    array = np.asarray(array, dtype=array.dtype if array.dtype.kind == "f" else np.float64)
    bad = array.size - int(np.count_nonzero(np.isfinite(array)))
    if bad:
        where = "" if entry.volume_slice is None else f" in slice {entry.volume_slice}"
        raise CorruptFileError(path, f"{bad} heatmap values{where} are NaN or infinite")
    return array


def _nifti_slice(path: Path, index: int) -> np.ndarray:
    import nibabel

    image = nibabel.load(path)
    shape = tuple(int(n) for n in image.shape)
    effective = len(shape)
    while effective > 3 and shape[effective - 1] == 1:
        effective -= 1
    if effective == 3 and not 0 <= index < shape[2]:
        raise ValueError(f"slice {index} out of range: the heatmap volume has {shape[2]} slices")
    if effective == 2 and index != 0:
        raise ValueError(f"slice {index} asked of a 2-D heatmap")
    selector = (slice(None), slice(None)) + ((index,) if effective == 3 else ()) + (0,) * (len(shape) - effective)
    return np.asarray(image.dataobj[selector])


# --- annotations and tissue ------------------------------------------------------------------------------------------


def load_annotations(spec: str) -> tuple[AnnotationSet, bool]:
    """(annotations, whether lesions are boxes) of an annotation spec (see ``EvaluationConfig.annotations``)."""
    kind, _, rest = spec.partition(":")
    if kind == "bcs-dbt" and rest:
        parts = [part.strip() for part in rest.split(",")]
        if len(parts) not in (2, 3):
            raise ConfigError(f"annotations: expected bcs-dbt:BOXES.csv,FILE_PATHS.csv[,ROOT], got {spec!r}")
        return AnnotationSet.from_bcs_dbt(parts[0], parts[1], root=parts[2] if len(parts) == 3 else None), True
    path = Path(spec)
    if path.is_dir():
        return AnnotationSet.from_mask_folder(path), False
    if not path.exists():
        raise AnnotationError(path, "annotation file or folder not found")
    if path.suffix.lower() != ".csv":
        raise AnnotationError(path, "expected a mask folder, a boxes or circles CSV, or bcs-dbt:BOXES,FILE_PATHS")
    with path.open(encoding="utf-8-sig") as stream:
        header = {cell.strip() for cell in next(csv.reader(stream), [])}
    if "radius" in header:
        return AnnotationSet.from_circles_csv(path), True
    return AnnotationSet.from_boxes_csv(path), True


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An entry's heatmap with its lesion mask, tissue mask ((H, W) bool) and lesions (boxes, px)."""

    heatmap: np.ndarray
    lesion: np.ndarray
    tissue: np.ndarray
    lesions: tuple[Box, ...]


class ImageLoader:
    """Reads an entry's heatmap, lesion mask, lesions and tissue mask, checking they agree in shape."""

    def __init__(self, config: EvaluationConfig):
        self.annotations, self.boxes = load_annotations(str(config.annotations))
        self.tissue_threshold = config.tissue_threshold
        self.tissue_masks = None if config.tissue_masks is None else AnnotationSet.from_mask_folder(config.tissue_masks)
        self.tissue_names = set() if self.tissue_masks is None else set(self.tissue_masks.names())
        self.annotated_names = set(self.annotations.names())

    def is_annotated(self, entry: HeatmapEntry) -> bool:
        """Whether the entry's image has lesion annotations (read without drawing masks)."""
        if self.boxes:
            return bool(self.annotations.boxes_for(entry.source))
        return image_key(entry.source) in self.annotated_names

    def load(self, entry: HeatmapEntry) -> LoadedImage:
        heatmap = read_heatmap(entry)
        header = read_header(entry.source)
        shape = (header.rows, header.cols)
        if heatmap.shape != shape:
            raise InputError(
                entry.heatmap_path, f"heatmap is {heatmap.shape[0]} x {heatmap.shape[1]} but its source image "
                f"{entry.source} is {shape[0]} x {shape[1]}"
            )
        lesion = self.annotations.mask_for(entry.source, shape, index=entry.slice_index)
        lesions = self.annotations.boxes_for(entry.source) if self.boxes else lesions_from_mask(lesion)
        return LoadedImage(heatmap, lesion, self._tissue(entry, shape), tuple(lesions))

    def _tissue(self, entry: HeatmapEntry, shape: tuple[int, int]) -> np.ndarray:
        if self.tissue_masks is None:
            pixels = read_image(entry.source, entry.slice_index).pixels
            return tissue_mask(pixels, self.tissue_threshold)
        if image_key(entry.source) not in self.tissue_names:
            raise InputError(self.tissue_masks.source, f"no tissue mask for image '{image_key(entry.source)}'")
        return self.tissue_masks.mask_for(entry.source, shape, index=entry.slice_index)


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


def _check_entries(config: EvaluationConfig, entries: Sequence[HeatmapEntry], loader: ImageLoader) -> None:
    seen: dict[str, HeatmapEntry] = {}
    for entry in entries:
        if entry.identity in seen:
            raise InputError(entry.heatmap_path, f"maps the same image as {seen[entry.identity].heatmap_path} "
                             f"({entry.identity}); evaluate one heatmap per image")
        seen[entry.identity] = entry
    if not any(loader.is_annotated(entry) for entry in entries):
        named = loader.annotations.names()
        raise AnnotationError(
            loader.annotations.source,
            f"none of the {len(named)} annotated images is the source of a heatmap in {config.heatmaps} "
            f"(annotations name e.g. {named[:3]}; heatmap sources are e.g. "
            f"{[image_key(e.source) for e in entries[:3]]})" if named else "no image is annotated",
        )


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
    _check_entries(config, entries, loader)
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
    lines = [
        "# picard-ad evaluation", "",
        f"{m['n_images']} images ({m['n_abnormal']} with lesions, {m['n_normal']} normal); heatmaps "
        f"`{config.heatmaps}`, annotations `{config.annotations}`, tissue: {tissue}.", "",
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
    pair("Inside/outside mean ratio", "inside_outside_ratio_mean", "inside_outside_ratio_median")
    pair(f"AUPRO up to FPR {config.aupro_fpr_limit:g}", "aupro")
    for key, name in (("dice", "Dice at the calibrated threshold"),
                      ("best_dice_optimistic", "Best Dice (optimistic upper bound)")):
        cells = [m[prefix + key] for prefix in ("", "tissue_")]
        lines.append(f"| {name} | " + " | ".join(
            "n/a" if c is None else f"{_number(c['mean'])} (t = {c['threshold']:.4g})" for c in cells) + " |")
    for index, rate in enumerate(config.fp_rates):
        cells = [_number(m[p + "lesion_sensitivity"]["sensitivity"][index]) for p in ("", "tissue_")]
        lines.append(f"| Lesion sensitivity at {rate:g} FP/image | {cells[0]} | {cells[1]} |")
    lines += [
        "", f"Image level (score: {config.image_score_quantile:g} quantile of the tissue heatmap): AUROC "
        f"{_number(m['image_auroc'])}, AP {_number(m['image_ap'])}.", "",
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

