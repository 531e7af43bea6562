"""Lesion annotations (boxes, circles, mask images) and their conversion to pixel masks.

Box convention, used everywhere in picard-ad: ``x`` is the column and ``y`` the row of the top-left pixel,
``width``/``height`` are in pixels, and the box covers rows ``y .. y+height-1`` and columns ``x .. x+width-1``
(end-exclusive slicing ``mask[y:y+height, x:x+width]``), so a box holds exactly ``width * height`` pixels.

Circles use the same frame: pixel ``(row, column)`` has its centre at coordinates ``(y, x) = (row, column)``, and
a circle covers the pixels whose centre lies within its radius.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from picard_ad.errors import AnnotationError
from picard_ad.io.writers import atomic_write_text


@dataclass(frozen=True)
class Box:
    """Axis-aligned lesion box in pixel coordinates (x = column, y = row, end-exclusive)."""

    x: int
    y: int
    width: int
    height: int
    label: str | None = None

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"box width and height must be positive, got {self.width} x {self.height}")

    @property
    def center(self) -> tuple[float, float]:
        """(row, column) of the box centre."""
        return (self.y + (self.height - 1) / 2, self.x + (self.width - 1) / 2)

    @property
    def diagonal(self) -> float:
        return math.hypot(self.width, self.height)

    def to_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean (H, W) mask of the box, clipped to the image."""
        mask = np.zeros(shape, dtype=bool)
        mask[max(self.y, 0) : max(self.y + self.height, 0), max(self.x, 0) : max(self.x + self.width, 0)] = True
        return mask


@dataclass(frozen=True)
class Circle:
    """Circular lesion: centre (x = column, y = row) and radius in pixels; covers pixel centres within the radius."""

    x: float
    y: float
    radius: float
    label: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.x) and math.isfinite(self.y) and math.isfinite(self.radius)):
            raise ValueError(f"circle centre and radius must be finite, got ({self.x}, {self.y}), r={self.radius}")
        if self.radius <= 0:
            raise ValueError(f"circle radius must be positive, got {self.radius}")
        if not self._covers_a_pixel():
            raise ValueError(f"circle at ({self.x}, {self.y}) with radius {self.radius} covers no pixel centre")

    def _covers_a_pixel(self) -> bool:
        nearest = (round(self.x) - self.x) ** 2 + (round(self.y) - self.y) ** 2
        return nearest <= self.radius**2

    @property
    def box(self) -> Box:
        """Smallest Box holding every pixel the circle covers (may extend past the image)."""
        columns = self._covered_range(self.x, self.y)
        rows = self._covered_range(self.y, self.x)
        return Box(x=columns[0], y=rows[0], width=columns[1] - columns[0], height=rows[1] - rows[0], label=self.label)

    def _covered_range(self, along: float, across: float) -> tuple[int, int]:
        """End-exclusive integer range along one axis touched by covered pixel centres."""
        # The widest chord lies on the integer line across the axis that is nearest to the centre.
        offset = round(across) - across
        half = math.sqrt(max(self.radius**2 - offset**2, 0.0))
        return math.ceil(along - half), math.floor(along + half) + 1

    def to_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean (H, W) mask of the circle, clipped to the image."""
        mask = np.zeros(shape, dtype=bool)
        _paint(self, mask)
        return mask


Shape = Box | Circle


def _paint(shape: Shape, mask: np.ndarray) -> int:
    """Set the pixels of ``shape`` inside ``mask`` (H, W) bool to True; return how many of them lie in the image."""
    box = shape if isinstance(shape, Box) else shape.box
    top, bottom = max(box.y, 0), min(box.y + box.height, mask.shape[0])
    left, right = max(box.x, 0), min(box.x + box.width, mask.shape[1])
    if top >= bottom or left >= right:
        return 0
    if isinstance(shape, Box):
        mask[top:bottom, left:right] = True
        return (bottom - top) * (right - left)
    rows = np.arange(top, bottom, dtype=np.float64)[:, None]
    columns = np.arange(left, right, dtype=np.float64)[None, :]
    inside = (rows - shape.y) ** 2 + (columns - shape.x) ** 2 <= shape.radius**2
    mask[top:bottom, left:right] |= inside
    return int(inside.sum())


def masks_from_shapes(
    shapes: Iterable[Shape],
    shape: tuple[int, int],
    *,
    source: str | Path | None = None,
    image_name: str | None = None,
) -> np.ndarray:
    """Union of the shapes' pixels as a bool (H, W) mask; shapes partly outside the image are clipped.

    Args:
        shapes: Box and Circle annotations of one image, in its pixel frame.
        shape: (H, W) of the image in pixels.
        source: annotation file, named in errors.
        image_name: image the shapes belong to, named in errors.

    Raises:
        AnnotationError: a shape has no pixel inside the image (wrong image or another coordinate convention).
    """
    height, width = (int(size) for size in shape)
    mask = np.zeros((height, width), dtype=bool)
    for item in shapes:
        if _paint(item, mask) == 0:
            owner = f" of image '{image_name}'" if image_name is not None else ""
            raise AnnotationError(
                source,
                f"{item}{owner} lies entirely outside the {height} x {width} image: the annotation belongs to "
                "another image or uses another coordinate convention",
            )
    return mask


# --- CSV reading --------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AnnotationError(path, "file not found") from None
    except UnicodeDecodeError:
        raise AnnotationError(path, "not a UTF-8 text file") from None
    except OSError as error:
        raise AnnotationError(path, f"cannot be read ({error.strerror or error})") from None


def _read_table(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV as (line number, {column: stripped value}); checks the header holds ``required``."""
    reader = csv.reader(io.StringIO(_read_text(path)))
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for cells in reader:
            cells = [cell.strip() for cell in cells]
            if not any(cells):
                continue
            if header is None:
                header = cells
                missing = [column for column in required if column not in header]
                if missing:
                    raise AnnotationError(
                        path, f"missing columns {', '.join(missing)} (header has: {', '.join(header)})"
                    )
                continue
            rows.append((reader.line_num, dict(zip(header, cells, strict=False))))
    except csv.Error as error:
        raise AnnotationError(path, f"line {reader.line_num}: malformed CSV ({error})") from None
    if header is None:
        raise AnnotationError(path, f"empty file: expected a header with columns {', '.join(required)}")
    return rows


def _field(row: dict[str, str], column: str, path: Path, line: int) -> str:
    value = row.get(column, "")
    if not value:
        raise AnnotationError(path, f"line {line}: no value in column '{column}'")
    return value


def _number(row: dict[str, str], column: str, path: Path, line: int, *, whole: bool = False) -> Any:
    """A finite number from ``column``; ``whole`` accepts only integral values (``12`` or ``12.0``)."""
    text = _field(row, column, path, line)
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(path, f"line {line}: column '{column}' is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(path, f"line {line}: column '{column}' is not finite: {text!r}")
    if whole:
        if not value.is_integer():
            raise AnnotationError(path, f"line {line}: column '{column}' must be a whole number of pixels: {text!r}")
        return int(value)
    return value


def _box_from_row(row: dict[str, str], columns: Sequence[str], label: str | None, path: Path, line: int) -> Box:
    x, y, width, height = (_number(row, column, path, line, whole=True) for column in columns)
    if width <= 0 or height <= 0:
        raise AnnotationError(path, f"line {line}: box width and height must be positive, got {width} x {height}")
    return Box(x=x, y=y, width=width, height=height, label=label)


def read_boxes_csv(path: str | Path) -> dict[str, list[Box]]:
    """Boxes per image from a CSV with columns ``image,x,y,width,height`` and an optional ``label``.

    Several rows may name the same image; other columns are ignored. Coordinates are whole pixels (x = column).
    """
    path = Path(path)
    boxes: dict[str, list[Box]] = {}
    for line, row in _read_table(path, ("image", "x", "y", "width", "height")):
        image = _field(row, "image", path, line)
        box = _box_from_row(row, ("x", "y", "width", "height"), row.get("label") or None, path, line)
        boxes.setdefault(image, []).append(box)
    return boxes


def write_boxes_csv(path: str | Path, boxes: Mapping[str, Iterable[Box]]) -> None:
    """Write boxes per image as ``image,x,y,width,height,label`` (atomically; an empty label means none)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "x", "y", "width", "height", "label"])
    for image, image_boxes in boxes.items():
        for box in image_boxes:
            writer.writerow([image, box.x, box.y, box.width, box.height, box.label or ""])
    atomic_write_text(path, buffer.getvalue())


def read_circles_csv(path: str | Path) -> dict[str, list[Circle]]:
    """Circles per image from a CSV with columns ``image,x,y,radius`` (x = column, y = row from the top, pixels).

    An optional ``label`` column is kept; other columns are ignored; several rows may name the same image.
    """
    path = Path(path)
    circles: dict[str, list[Circle]] = {}
    for line, row in _read_table(path, ("image", "x", "y", "radius")):
        image = _field(row, "image", path, line)
        x, y, radius = (_number(row, column, path, line) for column in ("x", "y", "radius"))
        circles.setdefault(image, []).append(_circle(x, y, radius, row.get("label") or None, path, line))
    return circles


def _circle(x: float, y: float, radius: float, label: str | None, path: Path, line: int) -> Circle:
    if radius <= 0:
        raise AnnotationError(path, f"line {line}: radius must be positive, got {radius:g}")
    try:
        return Circle(x=x, y=y, radius=radius, label=label)
    except ValueError as error:
        raise AnnotationError(path, f"line {line}: {error}") from None


# --- MIAS ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MiasFilm:
    """One MIAS film: its lesions as circles, plus abnormalities the database lists without coordinates."""

    refnum: str
    tissue: str
    lesions: tuple[Circle, ...] = ()
    unlocalised: tuple[str, ...] = ()  # labels ("CALC M") of abnormalities with no centre or radius

    @property
    def abnormal(self) -> bool:
        return bool(self.lesions or self.unlocalised)


def read_mias_info(path: str | Path, image_height: int = 1024) -> dict[str, MiasFilm]:
    """Films of the MIAS info file (rows ``refnum tissue class [severity [x y radius]]``), keyed by refnum.

    MIAS measures y from the bottom of the image; it is converted to a row from the top as
    ``row = image_height - y``. Several rows with one refnum are several lesions. Abnormal rows without
    coordinates go to ``MiasFilm.unlocalised`` so such films are not mistaken for normal ones.

    Args:
        path: the info file (``Info.txt``), whitespace-separated; a ``REFNUM ...`` header line is skipped.
        image_height: height in pixels of the images the coordinates refer to (1024 for MIAS).
    """
    path = Path(path)
    films: dict[str, dict[str, Any]] = {}
    for line, text in enumerate(_read_text(path).splitlines(), start=1):
        fields = text.split()
        if not fields or fields[0].upper() == "REFNUM":
            continue
        if len(fields) not in (3, 4, 7):
            raise AnnotationError(
                path, f"line {line}: expected 'refnum tissue class [severity [x y radius]]', got {text.strip()!r}"
            )
        refnum, tissue, kind = fields[:3]
        film = films.setdefault(refnum, {"tissue": tissue, "lesions": [], "unlocalised": [], "normal": False})
        if kind.upper() == "NORM":
            if len(fields) > 3:
                raise AnnotationError(path, f"line {line}: normal film {refnum} has abnormality fields")
            film["normal"] = True
        else:
            label = " ".join(fields[2:4])
            if len(fields) == 7:
                row = dict(zip(("x", "y", "radius"), fields[4:], strict=True))
                x, y, radius = (_number(row, column, path, line) for column in ("x", "y", "radius"))
                film["lesions"].append(_circle(x, image_height - y, radius, label, path, line))
            else:
                film["unlocalised"].append(label)
        if film["normal"] and (film["lesions"] or film["unlocalised"]):
            raise AnnotationError(path, f"line {line}: film {refnum} is listed both as normal and as abnormal")
    if not films:
        raise AnnotationError(path, "empty file: no MIAS films listed")
    return {
        refnum: MiasFilm(refnum, film["tissue"], tuple(film["lesions"]), tuple(film["unlocalised"]))
        for refnum, film in films.items()
    }


# --- BCS-DBT ------------------------------------------------------------------------------------------------------

_DBT_KEY = ("PatientID", "StudyUID", "View")


@dataclass(frozen=True)
class DbtBox:
    """One BCS-DBT lesion box, in the frame of the (laterality-flipped) volume, with its DICOM file."""

    patient_id: str
    study_uid: str
    view: str
    slice: int  # 0-based index of the lesion's central slice
    box: Box
    path: Path
    volume_slices: int | None = None
    label: str | None = None  # the Class column (benign / cancer) when present

    @property
    def name(self) -> str:
        """Image name used by AnnotationSet: ``{PatientID}_{StudyUID}_{View}``."""
        return f"{self.patient_id}_{self.study_uid}_{self.view}"


def read_bcs_dbt_boxes(
    boxes_csv: str | Path,
    filepaths_csv: str | Path,
    path_column: str = "descriptive_path",
    root: str | Path | None = None,
) -> list[DbtBox]:
    """BCS-DBT boxes joined with their DICOM paths on (PatientID, StudyUID, View).

    Args:
        boxes_csv: boxes file (PatientID, StudyUID, View, X, Y, Width, Height, Slice; optional VolumeSlices, Class).
        filepaths_csv: file-paths file (PatientID, StudyUID, View and ``path_column``).
        path_column: ``descriptive_path`` or ``classic_path``.
        root: folder the paths are relative to; paths are used as written when None.
    """
    boxes_csv, filepaths_csv = Path(boxes_csv), Path(filepaths_csv)
    paths: dict[tuple[str, str, str], str] = {}
    for line, row in _read_table(filepaths_csv, (*_DBT_KEY, path_column)):
        key = _dbt_key(row, filepaths_csv, line)
        value = _field(row, path_column, filepaths_csv, line)
        if paths.setdefault(key, value) != value:
            raise AnnotationError(filepaths_csv, f"line {line}: {_describe(key)} is listed with two different paths")
    records = []
    for line, row in _read_table(boxes_csv, (*_DBT_KEY, "X", "Y", "Width", "Height", "Slice")):
        key = _dbt_key(row, boxes_csv, line)
        if key not in paths:
            raise AnnotationError(boxes_csv, f"line {line}: no row for {_describe(key)} in {filepaths_csv}")
        label = row.get("Class") or None
        box = _box_from_row(row, ("X", "Y", "Width", "Height"), label, boxes_csv, line)
        central = _number(row, "Slice", boxes_csv, line, whole=True)
        slices = _number(row, "VolumeSlices", boxes_csv, line, whole=True) if row.get("VolumeSlices") else None
        if central < 0 or (slices is not None and central >= slices):
            raise AnnotationError(boxes_csv, f"line {line}: slice {central} is outside the volume ({slices} slices)")
        path = Path(paths[key]) if root is None else Path(root) / paths[key]
        records.append(DbtBox(row["PatientID"], row["StudyUID"], row["View"], central, box, path, slices, label))
    return records


def _dbt_key(row: dict[str, str], path: Path, line: int) -> tuple[str, str, str]:
    patient, study, view = (_field(row, column, path, line) for column in _DBT_KEY)
    return patient, study, view.lower()


def _describe(key: tuple[str, str, str]) -> str:
    return ", ".join(f"{column}={value}" for column, value in zip(_DBT_KEY, key, strict=True))


# --- AnnotationSet ------------------------------------------------------------------------------------------------


class SupportsApply(Protocol):
    """What ``AnnotationSet.mask_for`` needs from the image reader's Orientation: the same array transform."""

    def apply(self, array: np.ndarray) -> np.ndarray: ...


# Suffixes stripped when matching images to annotations; other dots belong to the name (``P_00173.1-130``).
_IMAGE_SUFFIXES = (
    ".nii.gz", ".nii", ".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".bmp", ".npy", ".mha",
    ".nrrd",
)


def image_key(name: str | Path) -> str:
    """Name an image by its file name without folder and image suffix (``images/case_01.png`` -> ``case_01``)."""
    base = Path(str(name)).name
    for suffix in _IMAGE_SUFFIXES:
        if base.lower().endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def _keyed_by_stem(items: Mapping[str, Any], source: Path) -> dict[str, Any]:
    keyed: dict[str, Any] = {}
    originals: dict[str, str] = {}
    for name, value in items.items():
        key = image_key(name)
        if key in keyed:
            raise AnnotationError(source, f"'{originals[key]}' and '{name}' name the same image '{key}'")
        keyed[key], originals[key] = value, name
    return keyed


class AnnotationSet:
    """Lesion annotations of a dataset, giving each image's bool mask at image resolution whatever the source.

    Images are matched by file stem (for BCS-DBT by ``DbtBox.name`` or the resolved DICOM path). An image with
    no annotation is normal: its mask is all False.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        shapes: Mapping[str, Sequence[Shape]] | None = None,
        mask_files: Mapping[str, Path] | None = None,
        mask_axis: int = 2,
        unlocalised: Iterable[str] = (),
        aliases: Mapping[str, str] | None = None,
    ):
        """Hold annotations from one source; the ``from_*`` constructors build them from files.

        Args:
            source: the annotation file or folder, named in errors.
            shapes: Box / Circle annotations keyed by image name.
            mask_files: mask image files keyed by image name.
            mask_axis: slicing axis of 3-D mask files.
            unlocalised: names of abnormal images whose lesions have no coordinates.
            aliases: other names of images (such as DICOM paths) mapped to their image names.
        """
        self.source = Path(source)
        self._shapes = dict(shapes or {})
        self._mask_files = dict(mask_files or {})
        self._mask_axis = mask_axis
        self._unlocalised = set(unlocalised)
        self._aliases = dict(aliases or {})

    @classmethod
    def from_boxes_csv(cls, path: str | Path) -> AnnotationSet:
        return cls(path, shapes=_keyed_by_stem(read_boxes_csv(path), Path(path)))

    @classmethod
    def from_circles_csv(cls, path: str | Path) -> AnnotationSet:
        return cls(path, shapes=_keyed_by_stem(read_circles_csv(path), Path(path)))

    @classmethod
    def from_mias_info(cls, path: str | Path, image_height: int = 1024) -> AnnotationSet:
        films = read_mias_info(path, image_height)
        return cls(
            path,
            shapes={refnum: list(film.lesions) for refnum, film in films.items() if film.lesions},
            unlocalised=[refnum for refnum, film in films.items() if film.unlocalised],
        )

    @classmethod
    def from_bcs_dbt(
        cls,
        boxes_csv: str | Path,
        filepaths_csv: str | Path,
        path_column: str = "descriptive_path",
        root: str | Path | None = None,
    ) -> AnnotationSet:
        """Boxes of BCS-DBT volumes; every box is drawn whatever slice is asked for (slices: read_bcs_dbt_boxes)."""
        shapes: dict[str, list[Shape]] = {}
        aliases: dict[str, str] = {}
        for record in read_bcs_dbt_boxes(boxes_csv, filepaths_csv, path_column, root):
            shapes.setdefault(record.name, []).append(record.box)
            aliases[str(record.path)] = record.name
        return cls(boxes_csv, shapes=shapes, aliases=aliases)

    @classmethod
    def from_mask_folder(cls, folder: str | Path, axis: int = 2) -> AnnotationSet:
        """Mask images named like their images: ``masks/case_01.png`` for ``images/case_01.dcm``.

        A pixel is lesion where the stored label is above 0 (PNG, NIfTI, TIFF, DICOM); JPEG masks are lossy and are
        binarised at mid-grey (stored value > 127 of 255) instead. Files without an image suffix (notes, CSVs,
        hidden temporaries) are skipped.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise AnnotationError(folder, "mask folder not found")
        files = {
            entry.name: entry
            for entry in sorted(folder.iterdir())
            if entry.is_file() and entry.name[0] != "." and image_key(entry.name) != entry.name
        }
        if not files:
            raise AnnotationError(folder, "mask folder holds no image files")
        return cls(folder, mask_files=_keyed_by_stem(files, folder), mask_axis=axis)

    def names(self) -> list[str]:
        """Names of the annotated images (abnormal ones), sorted."""
        return sorted(set(self._shapes) | set(self._mask_files) | self._unlocalised)

    def _key(self, image_name: str | Path) -> str:
        name = str(image_name)
        if name in self._shapes or name in self._mask_files or name in self._unlocalised:
            return name
        return self._aliases.get(name, image_key(name))

    def boxes_for(self, image_name: str | Path) -> list[Box]:
        """Boxes of an image (a circle gives its bounding box); [] for an image without annotation."""
        key = self._key(image_name)
        if key in self._mask_files:
            raise AnnotationError(self.source, f"image '{image_name}' is annotated by a mask image, not by boxes")
        return [item if isinstance(item, Box) else item.box for item in self._shapes.get(key, [])]

    def mask_for(
        self,
        image_name: str | Path,
        shape: tuple[int, int],
        *,
        index: int | None = None,
        orientation: SupportsApply | None = None,
    ) -> np.ndarray:
        """Bool (H, W) lesion mask of an image at its resolution; all False when the image has no annotation.

        Args:
            image_name: the image's file name or path (matched by stem), or its DBT name or DICOM path.
            shape: (H, W) of the image as stored, before orientation.
            index: slice of a 3-D mask file (mask folders only; boxes apply to every slice).
            orientation: the reader's orientation of this image; ``orientation.apply`` is applied to the mask so
                it follows an image that was flipped, e.g. left-aligned.
        """
        key = self._key(image_name)
        if key in self._unlocalised:
            raise AnnotationError(self.source, f"image '{image_name}' is abnormal but has lesions without coordinates")
        if key in self._mask_files:
            mask_file = self._mask_files[key]
            mask = self._read_mask_file(mask_file, index)
            if mask.shape != tuple(shape):
                raise AnnotationError(
                    mask_file, f"mask is {mask.shape[0]} x {mask.shape[1]} but image '{image_name}' is "
                    f"{shape[0]} x {shape[1]}"
                )
        else:
            mask = masks_from_shapes(self._shapes.get(key, []), shape, source=self.source, image_name=str(image_name))
        if orientation is not None:
            mask = np.ascontiguousarray(orientation.apply(mask), dtype=bool)
        return mask

    def _read_mask_file(self, mask_file: Path, index: int | None) -> np.ndarray:
        from picard_ad.io import read_image, read_mask

        if mask_file.suffix.lower() in (".jpg", ".jpeg"):
            # JPEG is lossy: faint compression noise around the outline is not lesion, so binarise at mid-grey.
            return read_image(mask_file, index, axis=self._mask_axis).pixels > 0.5
        return np.asarray(read_mask(mask_file, index=index, axis=self._mask_axis), dtype=bool)
