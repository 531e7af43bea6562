"""Inputs of an evaluation: heatmap files with their sidecars, their source images, annotations and tissue."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from picard_ad.data.tissue import tissue_mask
from picard_ad.errors import CorruptFileError, InputError
from picard_ad.evaluation.config import EvaluationConfig
from picard_ad.evaluation.sources import EvaluatedImage, ImageInfo
from picard_ad.io import read_header, read_image
from picard_ad.io.annotations import AnnotationSet, read_annotations
from picard_ad.metrics.lesions import lesions_from_mask

_HEATMAP_SUFFIXES = ("_heatmap.npy", "_heatmap.nii.gz")


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

    def info(self) -> ImageInfo:
        """Name, identity, the source's (H, W) from its header, and the row fields source, slice_index, heatmap."""
        header = read_header(self.source)
        fields = {"source": str(self.source), "slice_index": self.slice_index, "heatmap": str(self.heatmap_path)}
        return ImageInfo(self.name, self.identity, (header.rows, header.cols), fields)


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


@dataclass(frozen=True)
class AnnotationMatch:
    """How the heatmaps' source images met the annotations.

    unannotated_sources: source images that no annotation names.
    unannotated_heatmaps: names of the entries of those sources, evaluated as normal images.
    annotations_without_heatmap: annotation names that no entry's source takes, sorted.
    """

    unannotated_sources: tuple[Path, ...]
    unannotated_heatmaps: tuple[str, ...]
    annotations_without_heatmap: tuple[str, ...]


class ImageLoader:
    """Reads an entry's heatmap, lesion mask, lesions and tissue mask, checking they agree in shape.

    ``match`` names the annotation of the entries' source images first; ``load`` reads matched entries only.
    """

    def __init__(self, config: EvaluationConfig):
        self.annotations, self.boxes = read_annotations(config.annotations)
        self.tissue_threshold = config.tissue_threshold
        self.tissue_masks = None if config.tissue_masks is None else AnnotationSet.from_mask_folder(config.tissue_masks)
        self._keys: dict[Path, str | None] = {}
        self._tissue_keys: dict[Path, str | None] = {}

    def match(self, entries: Sequence[HeatmapEntry]) -> AnnotationMatch:
        """Name the annotation (and tissue mask) of each entry's source image, against all of them at once.

        Raises:
            AnnotationError: an annotation (or tissue mask) name would be taken by two or more source images.
        """
        sources = list(dict.fromkeys(entry.source for entry in entries))
        keys = self.annotations.match(sources)
        self._keys.update(zip(sources, keys, strict=True))
        if self.tissue_masks is not None:
            self._tissue_keys.update(zip(sources, self.tissue_masks.match(sources), strict=True))
        taken = set(keys)
        return AnnotationMatch(
            unannotated_sources=tuple(source for source, key in zip(sources, keys, strict=True) if key is None),
            unannotated_heatmaps=tuple(entry.name for entry in entries if self._keys[entry.source] is None),
            annotations_without_heatmap=tuple(name for name in self.annotations.names() if name not in taken),
        )

    def load(self, entry: HeatmapEntry) -> EvaluatedImage:
        """A matched entry's heatmap with its lesion mask, tissue mask and lesions (boxes, or a mask's regions)."""
        heatmap = read_heatmap(entry)
        info = entry.info()
        shape = info.shape
        if heatmap.shape != shape:
            raise InputError(
                entry.heatmap_path, f"heatmap is {heatmap.shape[0]} x {heatmap.shape[1]} but its source image "
                f"{entry.source} is {shape[0]} x {shape[1]}"
            )
        key = self._keys[entry.source]
        if key is None:
            lesion, lesions = np.zeros(shape, dtype=bool), []
        else:
            lesion = self.annotations.mask_for(key, shape, index=entry.slice_index)
            lesions = (
                self.annotations.boxes_for(key, index=entry.slice_index) if self.boxes else lesions_from_mask(lesion)
            )
        return EvaluatedImage(info, heatmap, lesion, self._tissue(entry, shape), tuple(lesions))

    def _tissue(self, entry: HeatmapEntry, shape: tuple[int, int]) -> np.ndarray:
        if self.tissue_masks is None:
            pixels = read_image(entry.source, entry.slice_index).pixels
            return tissue_mask(pixels, self.tissue_threshold)
        key = self._tissue_keys[entry.source]
        if key is None:
            raise InputError(self.tissue_masks.source, f"no tissue mask for image {entry.source}")
        return self.tissue_masks.mask_for(key, shape, index=entry.slice_index)


@dataclass(frozen=True, eq=False)
class HeatmapFiles:
    """The ``ImageSource`` of ``picard-ad evaluate``: heatmap entries read by a loader that has matched them."""

    entries: Sequence[HeatmapEntry]
    loader: ImageLoader

    def __len__(self) -> int:
        return len(self.entries)

    def info(self, index: int) -> ImageInfo:
        return self.entries[index].info()

    def load(self, index: int) -> EvaluatedImage:
        return self.loader.load(self.entries[index])

    def heatmap(self, index: int) -> np.ndarray:
        return read_heatmap(self.entries[index])
