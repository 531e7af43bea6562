"""``picard-ad view``: the heatmaps of an output folder gathered into one self-contained HTML file.

Per image (or volume: the slices of one source in one folder) the viewer holds, at a display size whose longest
side is at most ``max_side`` (larger images are reduced by whole blocks, ``reduce_blocks``): the source image as
8-bit grey, the heatmap quantized to 8 bits over the item's own score range [low, high] (block means; one range
for all slices of a volume, so the threshold slider works in score units), and the outline of the annotated
lesions (``outline_of`` the block-reduced mask: a block is lesion when any of its pixels is). With them go the
method, score and settings from the sidecars, the reader's record of each slice, and the per-image metrics of a
``picard-ad evaluate`` run when one is found in the folder or given. ``collect_view`` gathers, ``write_viewer``
writes the page (``viewer_page``) atomically.

The file stays bounded: when all slices together would exceed ``max_pixels`` displayed pixels, every image is
reduced further (a note in the page says so), and a folder that would not fit even at ``MIN_SIDE`` pixels a side
is refused.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from picard_ad.config import check_settings, setting
from picard_ad.errors import InputError, PicardError

MIN_SIDE = 64  # below this a reduced image shows too little to be worth viewing: the folder is refused instead
_SLICE_SUFFIX = re.compile(r"_s\d{4}$")
_SUMMARY_KEYS = (
    "n_images", "n_abnormal", "n_normal", "pixel_auroc_mean", "tissue_pixel_auroc_mean", "pixel_ap_mean",
    "tissue_pixel_ap_mean", "aupro", "tissue_aupro", "image_auroc", "image_ap",
)
_ROW_PATHS = ("name", "source", "heatmap")  # per-image row fields that identify the row rather than measure it


@dataclass(frozen=True)
class ViewerConfig:
    """Settings of ``picard-ad view``; flags share these names."""

    max_side: int = setting(1024, "longest side of a displayed image, px; larger images are reduced by whole "
                            "blocks", ge=MIN_SIDE)  # fmt: skip
    max_pixels: int = setting(25_000_000, "displayed pixels of all slices together; above it every image is "
                              "reduced further", ge=1)  # fmt: skip
    annotations: str | None = setting(None, "annotations whose outlines are drawn (mask folder, boxes or circles "
                                      "CSV, bcs-dbt:...) [the sidecars', else the evaluation's]")  # fmt: skip
    evaluation: str | None = setting(None, "output of picard-ad evaluate: its folder, per_image.csv or metrics.json "
                                     "[the one found in OUT_DIR]")  # fmt: skip

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True, eq=False)
class ViewSlice:
    """One displayed slice.

    image: (h, w) uint8, the source's [0, 1] intensities times 255. heatmap: (h, w) uint8, ``quantize``d over the
    item's [low, high]. outline: (h, w) bool lesion boundary, None without annotated lesion. metrics: the
    evaluation's per-image row, None without one. record: the sidecar's record of the slice (reader metadata,
    heatmap timings).
    """

    name: str
    slice_index: int
    image: np.ndarray
    heatmap: np.ndarray
    outline: np.ndarray | None
    metrics: dict[str, Any] | None
    record: dict[str, Any]


@dataclass(frozen=True, eq=False)
class ViewItem:
    """An image, or the slices of a volume, as displayed: ``shape`` (H, W) as stored, reduced by ``factor``;
    heatmap scores in [low, high]; ``sidecar`` the method, score, settings and input of its heatmap run."""

    name: str
    source: str
    shape: tuple[int, int]
    factor: int
    low: float
    high: float
    sidecar: dict[str, Any]
    slices: tuple[ViewSlice, ...]


@dataclass(frozen=True, eq=False)
class Viewer:
    """Everything the page shows: the items, the side they were reduced to, the evaluation's file and summary
    metrics (None without one), and notes on what was left out or reduced."""

    folder: Path
    items: tuple[ViewItem, ...]
    max_side: int
    evaluation: dict[str, Any] | None
    notes: tuple[str, ...]


# --- numbers -------------------------------------------------------------------------------------------------------


def quantize(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """(H, W) scores -> uint8 codes, 0 at ``low`` and 255 at ``high`` (all 0 when high == low); ``dequantize``
    returns each score within (high - low) / 510."""
    if not high > low:
        return np.zeros(np.shape(values), dtype=np.uint8)
    scaled = (np.asarray(values, dtype=np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def dequantize(codes: np.ndarray, low: float, high: float) -> np.ndarray:
    """uint8 codes -> float64 scores in [low, high]; what the page computes for the threshold slider."""
    return low + np.asarray(codes, dtype=np.float64) * ((high - low) / 255.0)


def display_factor(shape: tuple[int, int], max_side: int) -> int:
    """The smallest whole block side that brings an (H, W) image to at most ``max_side`` pixels a side."""
    return max(1, math.ceil(max(shape) / max_side))


def outline_of(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of ``mask`` with a 4-neighbour outside it (the image border counts as outside)."""
    from scipy.ndimage import binary_erosion

    mask = np.asarray(mask, dtype=bool)
    return mask & ~binary_erosion(mask, border_value=0)


def _grey(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.nan_to_num(pixels) * 255.0), 0, 255).astype(np.uint8)


def _display_side(sizes: Sequence[tuple[int, int, int]], config: ViewerConfig, folder: Path) -> int:
    """The largest side <= max_side at which the (rows, cols, n_slices) of every item fit ``max_pixels``."""

    def total(side: int) -> int:
        return sum(
            n * math.ceil(rows / f) * math.ceil(cols / f)
            for rows, cols, n in sizes
            for f in [display_factor((rows, cols), side)]
        )

    if total(config.max_side) <= config.max_pixels:
        return config.max_side
    if total(MIN_SIDE) > config.max_pixels:
        slices = sum(n for _, _, n in sizes)
        raise InputError(
            folder, f"{slices} slices of {len(sizes)} images need {total(MIN_SIDE)} displayed pixels even at "
            f"{MIN_SIDE} px a side, over max_pixels {config.max_pixels}: view a subfolder or raise --max-pixels",
        )
    fits, too_big = MIN_SIDE, config.max_side  # the total grows with the side: bisect between the two
    while too_big - fits > 1:
        middle = (fits + too_big) // 2
        fits, too_big = (middle, too_big) if total(middle) <= config.max_pixels else (fits, middle)
    return fits


# --- the folder's files --------------------------------------------------------------------------------------------


def _sidecar_of(heatmap: Path) -> dict[str, Any]:
    name = heatmap.name
    unit = next(name[: -len(s)] for s in ("_heatmap.npy", "_heatmap.nii.gz") if name.endswith(s))
    try:
        data = json.loads(heatmap.with_name(unit + ".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}  # find_heatmaps has read it already; a file changed since shows no settings
    return data if isinstance(data, dict) else {}


def _slice_records(sidecar: dict[str, Any]) -> dict[int, dict[str, Any]]:
    records = sidecar.get("slices")
    if not isinstance(records, list):
        return {}
    return {r["slice_index"]: r for r in records if isinstance(r, dict) and isinstance(r.get("slice_index"), int)}


def _run_record(sidecar: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of a heatmap run: method, score, settings, model, input and annotations."""
    keys = ("method", "score", "settings", "model", "input", "annotations", "package_version")
    return {key: sidecar[key] for key in keys if key in sidecar}


def _groups(entries: Sequence[Any]) -> list[list[Any]]:
    """Entries grouped per source image and heatmap folder (the slices of a volume together), slices sorted."""
    groups: dict[tuple[Path, Path], list[Any]] = {}
    for entry in entries:
        groups.setdefault((entry.heatmap_path.parent, entry.source.resolve()), []).append(entry)
    result = []
    for group in groups.values():
        seen: dict[int, Any] = {}
        for entry in group:
            seen.setdefault(entry.slice_index, entry)
        result.append([seen[index] for index in sorted(seen)])
    return result


def _item_name(group: Sequence[Any]) -> str:
    first = group[0]
    if len(group) == 1 and first.volume_slice is None:
        return first.name
    return _SLICE_SUFFIX.sub("", first.name)


def _parse_cell(text: str) -> Any:
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class _Evaluation:
    """The per-image rows of a ``picard-ad evaluate`` run, found by heatmap name, heatmap file or source slice."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.rows: list[dict[str, Any]] = []
        try:
            with open(folder / "per_image.csv", newline="", encoding="utf-8") as handle:
                self.rows = [{k: _parse_cell(v) for k, v in row.items()} for row in csv.DictReader(handle)]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputError(folder / "per_image.csv", f"not readable as the per-image metrics ({exc})") from None
        self.summary: dict[str, Any] = {}
        try:
            metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
            self.summary = {k: metrics[k] for k in _SUMMARY_KEYS if isinstance(metrics.get(k), (int, float))}
        except (OSError, ValueError, AttributeError):
            pass  # the rows alone still serve
        self.annotations = self._annotations()
        self._by_key: dict[Any, dict[str, Any]] = {}
        for row in self.rows:
            slice_index = row.get("slice_index") or 0
            for key in self._keys(row.get("name"), row.get("heatmap"), row.get("source"), slice_index):
                self._by_key.setdefault(key, row)
        self.matched = 0

    def _annotations(self) -> str | None:
        import yaml

        try:
            config = yaml.safe_load((self.folder / "config.yaml").read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):
            return None
        value = config.get("annotations") if isinstance(config, dict) else None
        return value if isinstance(value, str) else None

    @staticmethod
    def _keys(name: Any, heatmap: Any, source: Any, slice_index: int) -> list[Any]:
        keys: list[Any] = [("name", name)] if name else []
        for kind, path in (("heatmap", heatmap), ("source", source)):
            if isinstance(path, str) and path:
                keys.append((kind, str(Path(path).resolve()), slice_index))
        return keys

    def row(self, entry: Any) -> dict[str, Any] | None:
        """The metrics of an entry (identifying fields left out), or None when the evaluation has none."""
        for key in self._keys(entry.name, str(entry.heatmap_path), str(entry.source), entry.slice_index):
            if key in self._by_key:
                self.matched += 1
                return {k: v for k, v in self._by_key[key].items() if k not in _ROW_PATHS}
        return None


def _find_evaluation(folder: Path, given: str | None, notes: list[str]) -> _Evaluation | None:
    if given is not None:
        path = Path(given)
        if path.is_file():
            path = path.parent
        if not (path / "per_image.csv").is_file():
            raise InputError(given, "no per_image.csv of picard-ad evaluate here")
        return _Evaluation(path)
    found = sorted(
        p.parent for p in folder.rglob("per_image.csv")
        if (p.parent / "metrics.json").is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if len(found) > 1:
        notes.append(f"{len(found)} evaluations in the folder ({', '.join(map(str, found[:3]))}); none shown: "
                     "choose one with --evaluation")
        return None
    return _Evaluation(found[0]) if found else None


class _Outlines:
    """Lesion masks of the items' sources from an annotation spec per item; specs that come from the sidecars
    or the evaluation (not given) and cannot be read here are a note, not an error."""

    def __init__(self, given: str | None, notes: list[str]):
        self.given = given
        self.notes = notes
        self.loaded: dict[str, Any] = {}
        self.keys: dict[tuple[str, Path], str | None] = {}

    def prepare(self, specs: dict[Path, str | None]) -> None:
        """Read each spec once and match it against all the sources that use it (ambiguous names refused)."""
        from picard_ad.io.annotations import read_annotations

        by_spec: dict[str, list[Path]] = {}
        for source, spec in specs.items():
            if spec is not None:
                by_spec.setdefault(spec, []).append(source)
        for spec, sources in by_spec.items():
            try:
                annotations = read_annotations(spec).annotations
                keys = annotations.match(sources)
            except PicardError as exc:
                if spec == self.given:
                    raise
                self.notes.append(f"annotations {spec} not readable here ({exc}); outlines left out: give "
                                  "--annotations")
                continue
            self.loaded[spec] = annotations
            self.keys.update({(spec, source): key for source, key in zip(sources, keys, strict=True)})

    def mask(self, spec: str | None, source: Path, shape: tuple[int, int], index: int) -> np.ndarray | None:
        key = self.keys.get((spec, source)) if spec is not None else None
        if key is None:
            return None
        return self.loaded[spec].mask_for(key, shape, index=index)


# --- gathering -----------------------------------------------------------------------------------------------------


def collect_view(folder: str | Path, config: ViewerConfig | None = None) -> Viewer:
    """Gather every heatmap under ``folder`` (searched recursively) with its source image, outlines, metrics and
    settings, reduced for display as the module docstring says.

    Raises:
        InputError: no such folder, no heatmaps in it, a source image that is missing or of another size than its
            heatmap, or more slices than ``max_pixels`` allows at ``MIN_SIDE``.
    """
    from picard_ad.evaluation.inputs import find_heatmaps, read_heatmap
    from picard_ad.io import iter_slices, read_header
    from picard_ad.report.montage import reduce_blocks

    config = config or ViewerConfig()
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "no such folder (give the output folder of picard-ad heatmap)")
    groups = _groups(find_heatmaps(folder))
    notes: list[str] = []
    evaluation = _find_evaluation(folder, config.evaluation, notes)
    headers = {group[0].source: read_header(group[0].source) for group in groups}
    side = _display_side([(headers[g[0].source].rows, headers[g[0].source].cols, len(g)) for g in groups],
                         config, folder)  # fmt: skip
    if side < config.max_side:
        notes.append(f"images are shown at most {side} px a side (not {config.max_side}) to keep the page under "
                     f"{config.max_pixels} displayed pixels")
    sidecars = {id(group): _sidecar_of(group[0].heatmap_path) for group in groups}
    fallback = evaluation.annotations if evaluation is not None else None
    specs = {g[0].source: config.annotations or sidecars[id(g)].get("annotations") or fallback for g in groups}
    outlines = _Outlines(config.annotations, notes)
    outlines.prepare({source: spec if isinstance(spec, str) else None for source, spec in specs.items()})

    items = []
    for group in groups:
        source, sidecar = group[0].source, sidecars[id(group)]
        header = headers[source]
        shape = (header.rows, header.cols)
        factor = display_factor(shape, side)
        records = _slice_records(sidecar)
        reduced = []
        for entry, image in zip(group, iter_slices(source, [e.slice_index for e in group]), strict=True):
            heatmap = read_heatmap(entry)
            pixels = np.ascontiguousarray(image.meta.orientation.undo(image.pixels))
            if heatmap.shape != pixels.shape:
                raise InputError(entry.heatmap_path, f"heatmap is {heatmap.shape[0]} x {heatmap.shape[1]} but its "
                                 f"source image {source} is {pixels.shape[0]} x {pixels.shape[1]}")  # fmt: skip
            mask = outlines.mask(specs[source], source, pixels.shape, entry.slice_index)
            outline = None
            if mask is not None and mask.any():
                outline = outline_of(reduce_blocks(mask, factor, "any"))
            reduced.append((entry, _grey(reduce_blocks(pixels, factor)),
                            np.asarray(reduce_blocks(heatmap, factor), dtype=np.float64), outline))  # fmt: skip
        low = float(min(h.min() for _, _, h, _ in reduced))
        high = float(max(h.max() for _, _, h, _ in reduced))
        slices = tuple(
            ViewSlice(entry.name, entry.slice_index, image, quantize(heatmap, low, high), outline,
                      None if evaluation is None else evaluation.row(entry), records.get(entry.slice_index, {}))
            for entry, image, heatmap, outline in reduced
        )  # fmt: skip
        items.append(ViewItem(_item_name(group), str(source), shape, factor, low, high, _run_record(sidecar), slices))

    summary = None
    if evaluation is not None:
        summary = {"path": str(evaluation.folder), "summary": evaluation.summary, "matched": evaluation.matched}
        if evaluation.matched == 0:
            notes.append(f"the evaluation in {evaluation.folder} names none of these heatmaps")
    return Viewer(folder, tuple(items), side, summary, tuple(notes))


# --- writing -------------------------------------------------------------------------------------------------------


def png_base64(array: np.ndarray) -> str:
    """(H, W) uint8 (8-bit grey) or bool (1-bit) -> PNG file, base64 text."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def colormap_table(name: str = "jet") -> list[list[int]]:
    """256 [r, g, b] of a matplotlib colour map, the one the overlay PNGs of ``picard-ad heatmap`` use."""
    import matplotlib

    rgb = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.rint(rgb * 255).astype(int).tolist()


def viewer_data(viewer: Viewer) -> dict[str, Any]:
    """The page's data: strict-JSON-ready, images as base64 PNG."""
    from picard_ad import __version__

    items = []
    for item in viewer.items:
        rows, cols = item.slices[0].image.shape
        items.append({
            "name": item.name, "source": item.source, "shape": list(item.shape), "display": [rows, cols],
            "factor": item.factor, "low": item.low, "high": item.high, "run": item.sidecar,
            "slices": [{
                "name": s.name, "slice_index": s.slice_index, "image": png_base64(s.image),
                "heatmap": png_base64(s.heatmap), "outline": None if s.outline is None else png_base64(s.outline),
                "metrics": s.metrics, "record": s.record,
            } for s in item.slices],
        })  # fmt: skip
    return {
        "folder": str(viewer.folder), "package_version": __version__, "max_side": viewer.max_side,
        "colormap": colormap_table(), "evaluation": viewer.evaluation, "notes": list(viewer.notes), "items": items,
    }


def write_viewer(viewer: Viewer, path: str | Path) -> Path:
    """Write the page to ``path`` (temporary + rename) and return ``path``."""
    from picard_ad.io.writers import atomic_write_text
    from picard_ad.report.viewer_page import page_html

    path = Path(path)
    atomic_write_text(path, page_html(viewer_data(viewer), title=f"picard-ad view: {viewer.folder.name}"))
    return path
