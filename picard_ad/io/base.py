"""Image metadata, the reader interface with dispatch by suffix and magic bytes, and intensity normalisation.

Every reader returns one 2D slice at a time as float32 in [0, 1] with tissue bright; the ``normalization``
string recorded in :class:`ImageMeta` says exactly how the stored values were mapped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from picard_ad.errors import (
    ConfigError,
    CorruptFileError,
    InputError,
    UnsupportedFormatError,
)
from picard_ad.io.orientation import Orientation, detect_breast_side
from picard_ad.memory import available_memory

SUPPORTED_SUFFIXES = (".dcm", ".dicom", ".nii", ".nii.gz", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
NORMALIZATIONS = ("auto", "window", "bits", "minmax", "percentile")
PERCENTILE_RANGE = (0.5, 99.5)  # for normalization="percentile", per image
_HEAD_BYTES = 352  # enough for the DICOM marker at 128 and the NIfTI-1 magic at 344


@dataclass(frozen=True)
class ImageHeader:
    """What a file holds, read without decoding pixel data.

    ``n_slices`` counts frames (DICOM), positions along axis 2 (NIfTI) or pages (TIFF); ``normalization``
    describes what ``read_image(normalization="auto")`` will do; ``spacing`` is (row, column) in mm.
    """

    path: str
    format: str
    stored_shape: tuple[int, ...]
    n_slices: int
    rows: int
    cols: int
    stored_dtype: str
    bits_stored: int | None
    modality: str | None
    photometric: str | None
    transfer_syntax: str | None
    compressed: bool
    spacing: tuple[float, float] | None
    normalization: str
    notes: tuple[str, ...] = ()  # decisions the reader took (fallbacks) and the libraries' warnings, one line each

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


@dataclass(frozen=True)
class ImageMeta:
    """Where a slice came from and how it was mapped to [0, 1]; ``spacing`` is (row, column) in mm."""

    path: str
    format: str
    modality: str | None
    spacing: tuple[float, float] | None
    photometric: str | None
    normalization: str
    slice_index: int
    n_slices: int
    stored_shape: tuple[int, ...]
    stored_dtype: str
    orientation: Orientation = field(default_factory=Orientation)
    breast_side: str | None = None
    notes: tuple[str, ...] = ()  # decisions the reader took (fallbacks) and the libraries' warnings, one line each

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["orientation"] = self.orientation.to_dict()
        return _plain(data)


@dataclass(frozen=True, eq=False)
class ScanImage:
    """One 2D slice: ``pixels`` is (H, W) float32 in [0, 1], C-contiguous, tissue bright."""

    pixels: np.ndarray
    meta: ImageMeta


@dataclass(frozen=True)
class SliceOrigin:
    """Where a 2-D image came from: slice ``index`` along ``axis`` (NIfTI) of the file at ``path``, read with
    ``normalization`` (``iter_slices``). Methods that normalise a slice with statistics of its whole volume (a
    patient's z-score) read the volume through it."""

    path: Path
    index: int = 0
    axis: int = 2
    normalization: str = "auto"


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}


class ReadWarning(UserWarning):
    """A file was read, but with decisions its user should know of: ``"<path>: <note>; <note>"``.

    Issued once per file and message in a process; the notes stay in ``ImageHeader.notes`` / ``ImageMeta.notes``.
    """


# Advice of the libraries that does not apply to picard-ad's users (we never read with pydicom's force=True).
_ADVICE = (
    re.compile(r"\s*Use force=True[^.]*\.?"),
    re.compile(r"\s*Please see <[^>]*> for allowed values for each VR\.?"),
)
_LIBRARY_LOGGERS = ("tifffile", "PIL", "nibabel")  # pydicom logs what it also warns, so its warnings suffice
_reported: set[str] = set()


def one_line(text: object) -> str:
    """A library's message on one line, without advice meant for the library's own users."""
    text = str(text)
    for advice in _ADVICE:
        text = advice.sub("", text)
    return " ".join(text.split())


class _NoteHandler(logging.Handler):
    def __init__(self, notes: list[str]):
        super().__init__(logging.WARNING)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        self.notes.append(one_line(record.getMessage()))


@contextlib.contextmanager
def library_messages() -> Iterator[list[str]]:
    """Collect the warnings, and the warning log records of the imaging libraries, raised inside the block.

    Yields a list that holds them, one line each and without repeats, once the block has finished; nothing is
    printed. Keep the block to library calls: a generator must not yield inside it.
    """
    notes: list[str] = []
    handler = _NoteHandler(notes)
    loggers = [logging.getLogger(name) for name in _LIBRARY_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield notes
            finally:
                notes.extend(one_line(item.message) for item in caught)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        notes[:] = list(dict.fromkeys(note for note in notes if note))


def with_notes(record: Any, notes: Sequence[str]) -> Any:
    """``record`` (an ImageHeader or ImageMeta) with ``notes`` appended to its own, without repeats."""
    merged = tuple(dict.fromkeys((*record.notes, *notes)))
    return record if merged == record.notes else replace(record, notes=merged)


def forget_reported_notes() -> None:
    """Let ``report_notes`` warn again about files it warned about before (a new command in the same process)."""
    _reported.clear()


def report_notes(path: str | Path, notes: Sequence[str]) -> None:
    """Issue one ReadWarning naming ``path`` and its notes, unless this process issued the same one before."""
    if not notes:
        return
    message = f"{path}: {'; '.join(notes)}"
    if message not in _reported:
        _reported.add(message)
        warnings.warn(ReadWarning(message), stacklevel=3)


# The pixel limit. Scoring an image holds at the same time the decoded file and its grey copy (1 to 8 bytes a
# pixel), the float32 image and its orientation-undone copy (8), the heatmap as float32 with its undone copy and
# the assembly's temporaries, once per score the method computes, and the method's own temporaries (tissue mask,
# filters). Growth of the peak memory of ``picard-ad heatmap`` from a 3000 x 3000 to a 6000 x 6000 PNG, per added
# pixel: brightness 8.5 bytes, PICARD 14.6 (plus about 450 MB that do not grow with the image), local-contrast
# 17.4. The rule keeps a margin of about 1.4 over the largest, which also covers such fixed costs for images near
# the limit: an image is read only when BYTES_PER_PIXEL bytes a pixel fit in the memory available now (overlays
# are drawn in bounded memory, see picard_ad.report.montage).
BYTES_PER_PIXEL = 24


def check_image_size(path: Path, rows: int, cols: int) -> None:
    """Refuse an image whose reading and scoring would not fit in the available memory (see BYTES_PER_PIXEL)."""
    memory = available_memory()
    if memory is None or rows * cols * BYTES_PER_PIXEL <= memory:
        return
    gib = 2.0**30
    raise InputError(
        path,
        f"image of {cols} x {rows} pixels ({rows * cols / 1e6:.0f} megapixels) is too large for the memory "
        f"available: reading and scoring it needs about {rows * cols * BYTES_PER_PIXEL / gib:.1f} GiB "
        f"({BYTES_PER_PIXEL} bytes per pixel), {memory / gib:.1f} GiB is available, so the limit now is "
        f"{math.floor(memory / BYTES_PER_PIXEL / 1e6)} megapixels",
    )


class ImageReader(ABC):
    """One image format: recognised by suffix or magic bytes, read one 2D slice at a time."""

    format: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]

    def matches_magic(self, head: bytes) -> bool:
        """Whether the first bytes of a file identify this format."""
        return False

    @abstractmethod
    def read_header(self, path: Path, axis: int = 2) -> ImageHeader:
        """Describe the file without decoding pixel data (``axis`` matters for volumes only)."""

    @abstractmethod
    def iter_slices(self, path: Path, indices: Sequence[int], axis: int, normalization: str) -> Iterator[ScanImage]:
        """Yield the slices at ``indices`` (already checked against ``n_slices``), normalised to [0, 1]."""

    @abstractmethod
    def read_labels(self, path: Path, index: int, axis: int) -> np.ndarray:
        """Return one slice's stored values (H, W) for masks: no rescaling, windowing or flipping."""


def _readers() -> tuple[ImageReader, ...]:
    # Imported here because the format modules import this one.
    from picard_ad.io.dicom import DicomReader
    from picard_ad.io.nifti import NiftiReader
    from picard_ad.io.raster import JpegReader, PngReader, TiffReader

    return DicomReader(), NiftiReader(), PngReader(), JpegReader(), TiffReader()


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as stream:
            return stream.read(_HEAD_BYTES)
    except OSError as exc:
        raise InputError(path, f"cannot read the file: {exc.strerror or exc}") from exc


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "file not found")
    if not path.is_file():
        raise InputError(path, "not a file")


def reader_for(path: str | Path) -> ImageReader:
    """Choose the reader for ``path``: magic bytes first (PNG, JPEG, TIFF, DICOM 'DICM'), then the suffix."""
    path = Path(path)
    _check_file(path)
    readers = _readers()
    head = _read_head(path)
    for reader in readers:
        if reader.matches_magic(head):
            return reader
    name = path.name.lower()
    for reader in readers:
        if name.endswith(reader.suffixes):
            return reader
    raise UnsupportedFormatError(
        path,
        f"unknown image type {''.join(path.suffixes) or '(no suffix)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}, "
        "and DICOM files of any name with the 'DICM' marker",
    )


def check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ConfigError(f"unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}")


def check_axis(axis: int) -> None:
    if axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0, 1 or 2, got {axis!r}")


def scale_to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly to [0, 1] and clip; an empty range (high <= low) gives zeros. Returns float32.

    Computed in float32, which holds integers up to 2**24 exactly, so 16-bit data keeps every grey level.
    """
    values = np.asarray(values)
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    scaled = values.astype(np.float32)  # always a copy, so the in-place steps below never touch the input
    scaled -= np.float32(low)
    scaled /= np.float32(high - low)  # dividing (not multiplying by the inverse) maps high to exactly 1
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def require_finite(values: np.ndarray, path: Path) -> None:
    """Raise CorruptFileError when a float array holds NaN or infinity."""
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise CorruptFileError(path, f"{bad} pixel values are NaN or infinite")


def data_range(values: np.ndarray, normalization: str, path: Path) -> tuple[float, float, str]:
    """(low, high, description) of one image for ``"minmax"`` or ``"percentile"`` (0.5th..99.5th)."""
    require_finite(values, path)
    if normalization == "minmax":
        low, high = float(values.min()), float(values.max())
        return low, high, f"min-max [{low:g}, {high:g}] -> [0,1]"
    low, high = (float(v) for v in np.percentile(values, PERCENTILE_RANGE))
    first, last = PERCENTILE_RANGE
    return low, high, f"percentiles {first:g}-{last:g} [{low:g}, {high:g}] -> [0,1], clipped"


def luma(rgb: np.ndarray) -> np.ndarray:
    """Grey value of (..., 3+) RGB(A) data with ITU-R BT.601 weights; extra channels (alpha) are ignored."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)


def _resolve_indices(path: Path, indices: Sequence[int] | None, n_slices: int) -> list[int]:
    if indices is None:
        return list(range(n_slices))
    resolved = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise InputError(path, f"slice index must be an integer, got {index!r}")
        if not 0 <= index < n_slices:
            raise InputError(path, f"slice index {index} out of range: valid 0..{n_slices - 1} ({n_slices} slices)")
        resolved.append(int(index))
    return resolved


def _captured(path: Path, slices: Iterator[ScanImage]) -> Iterator[ScanImage]:
    """The reader's slices with the libraries' warnings of each added to its notes, reported once per file."""
    try:
        while True:
            with library_messages() as notes:
                image = next(slices, None)
            if image is None:
                return
            meta = with_notes(image.meta, notes)
            report_notes(path, meta.notes)
            yield ScanImage(image.pixels, meta)
    finally:
        slices.close()


def _left_aligned(image: ScanImage) -> ScanImage:
    side = detect_breast_side(image.pixels)
    orientation = Orientation(flip_horizontal=side == "R")
    pixels = np.ascontiguousarray(orientation.apply(image.pixels))
    return ScanImage(pixels, replace(image.meta, orientation=orientation, breast_side=side))


def _open(path: str | Path, axis: int) -> tuple[Path, ImageReader, ImageHeader]:
    path = Path(path)
    reader = reader_for(path)
    with library_messages() as notes:
        header = reader.read_header(path, axis)
    header = with_notes(header, notes)
    report_notes(path, header.notes)
    return path, reader, header


def _slices(
    reader: ImageReader, path: Path, indices: list[int], axis: int, normalization: str, align_left: bool
) -> Iterator[ScanImage]:
    slices = _captured(path, reader.iter_slices(path, indices, axis, normalization))
    return (_left_aligned(image) for image in slices) if align_left else slices


def read_header(path: str | Path) -> ImageHeader:
    """Describe an image file (shape, slices, dtype, spacing, planned normalisation) without decoding pixels."""
    return _open(path, 2)[2]


def iter_slices(
    path: str | Path,
    indices: Sequence[int] | None = None,
    *,
    axis: int = 2,
    normalization: str = "auto",
    align_left: bool = False,
) -> Iterator[ScanImage]:
    """Yield 2D slices of a file one at a time; only the requested frames are decoded.

    Args:
        indices: slice numbers (frames, NIfTI positions along ``axis``, TIFF pages), all of them when None.
            The file, options and indices are checked before this returns; errors that depend on the format
            (normalization "window" outside DICOM) or on the pixel data come when iterating.
        axis: NIfTI volumes only: the axis to slice along (0, 1 or 2).
        normalization: "auto" (per format: DICOM VOI window or stored bit range, NIfTI volume min..99.9th
            percentile, raster dtype range), "window" (DICOM VOI window), "bits" (stored bit range),
            "minmax" or "percentile" (0.5..99.5) per image.
        align_left: detect the breast side of each slice and flip right-sided slices so the breast touches the
            left edge; ``meta.orientation.undo`` maps results back.
    """
    check_normalization(normalization)
    check_axis(axis)
    path, reader, header = _open(path, axis)
    resolved = _resolve_indices(path, indices, header.n_slices)
    return _slices(reader, path, resolved, axis, normalization, align_left)


def read_image(
    path: str | Path,
    index: int | None = None,
    *,
    axis: int = 2,
    normalization: str = "auto",
    align_left: bool = False,
) -> ScanImage:
    """Read one 2D slice as float32 in [0, 1]; ``index`` None means the central slice (``n_slices // 2``).

    Keyword arguments as in :func:`iter_slices`.
    """
    check_normalization(normalization)
    check_axis(axis)
    path, reader, header = _open(path, axis)
    resolved = _resolve_indices(path, [header.n_slices // 2 if index is None else index], header.n_slices)
    return next(_slices(reader, path, resolved, axis, normalization, align_left))


def read_mask(path: str | Path, index: int | None = None, *, axis: int = 2) -> np.ndarray:
    """Read a label image as a bool (H, W) mask: stored value > 0 (palette index for palette PNGs).

    No normalisation and no flip. Colour files use their grey value, so a lossy JPEG mask should rather be read
    with ``read_image`` and thresholded. ``index`` None means the central slice.
    """
    check_axis(axis)
    path, reader, header = _open(path, axis)
    (index,) = _resolve_indices(path, [header.n_slices // 2 if index is None else index], header.n_slices)
    with library_messages() as notes:
        labels = reader.read_labels(path, index, axis)
    report_notes(path, notes)
    return np.ascontiguousarray(labels > 0)


def find_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Sorted paths of the readable images in ``folder``: supported suffixes, and DICOM files of any name.

    Hidden files and folders (names starting with '.', such as half-written temporaries) are skipped.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(folder, "folder not found")
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    from picard_ad.io.dicom import DicomReader

    dicom = DicomReader()
    found = []
    for path in folder.rglob("*") if recursive else folder.glob("*"):
        if any(part.startswith(".") for part in path.relative_to(folder).parts) or not path.is_file():
            continue
        if path.name.lower().endswith(SUPPORTED_SUFFIXES) or dicom.matches_magic(_read_head(path)):
            found.append(path)
    return sorted(found)
