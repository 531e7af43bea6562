"""DICOM reader (pydicom 3): single- and multi-frame, native or compressed, decoding one frame at a time.

Per frame: decode (only that frame), Modality LUT (Rescale Slope/Intercept), then the VOI window of the DICOM
standard (PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT or SIGMOID) mapped to [0, 1], or the stored bit range when the
file has no window; MONOCHROME1 is inverted so that dense tissue and bone are bright. Rescale, window and pixel
spacing are looked up per frame in PerFrameFunctionalGroupsSequence, then SharedFunctionalGroupsSequence, then
at the top level (enhanced multi-frame objects such as breast tomosynthesis keep them in the functional groups).
Modality LUT tables and VOI LUT tables (as opposed to windows) are not applied.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder, iter_pixels
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
)

from picard_ad.errors import (
    CorruptFileError,
    InputError,
    MissingDependencyError,
    UnsupportedFormatError,
)
from picard_ad.io.base import (
    ImageHeader,
    ImageMeta,
    ImageReader,
    ScanImage,
    data_range,
    luma,
    scale_to_unit,
)

_PIXEL_TAGS = {
    (0x7FE0, 0x0010): "PixelData",
    (0x7FE0, 0x0008): "FloatPixelData",
    (0x7FE0, 0x0009): "DoubleFloatPixelData",
}
_PHOTOMETRICS = {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}


@dataclass(frozen=True)
class _Window:
    center: float
    width: float
    function: str  # LINEAR, LINEAR_EXACT or SIGMOID
    source: str

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Map rescaled values to [0, 1] with the DICOM VOI formulas (output range 0..1)."""
        c, w = self.center, self.width
        if self.function == "SIGMOID":
            return 1.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
        if self.function == "LINEAR_EXACT":
            return np.clip((values - c) / w + 0.5, 0.0, 1.0)
        if w == 1:  # the LINEAR formula degenerates to a threshold at c - 0.5
            return (values > c - 0.5).astype(np.float32)
        return np.clip((values - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0)

    def describe(self) -> str:
        kind = "" if self.function == "LINEAR" else f" {self.function}"
        return f"VOI window{kind} C={self.center:g} W={self.width:g} ({self.source}) -> [0,1]"


@dataclass(frozen=True)
class _FrameTransform:
    """Everything needed to map one frame's stored values to [0, 1]."""

    slope: float
    intercept: float
    rescale_source: str | None  # None when there is no Modality LUT
    window: _Window | None
    stored_range: tuple[float, float] | None  # stored bit range after rescale; None for float pixel data
    bits_stored: int | None
    invert: bool  # MONOCHROME1

    def auto_mode(self) -> str:
        return "window" if self.window else "bits" if self.stored_range else "minmax"

    def describe(self, core: str) -> str:
        prefix = f"rescale slope={self.slope:g} intercept={self.intercept:g} ({self.rescale_source}), " if (
            self.rescale_source
        ) else ""
        return prefix + core + (", MONOCHROME1 inverted" if self.invert else "")

    def describe_auto(self) -> str:
        """What normalization="auto" does, without looking at pixel values."""
        mode = self.auto_mode()
        if mode == "window":
            return self.describe(self.window.describe())
        return self.describe(self.bits_description() if mode == "bits" else "min-max per image -> [0,1]")

    def bits_description(self) -> str:
        low, high = self.stored_range
        return f"stored bit range [{low:g}, {high:g}] (BitsStored={self.bits_stored}) -> [0,1]"


def _first_number(value: object) -> float | None:
    """The first value of a possibly multi-valued DICOM number, or None when empty or not finite."""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0] if len(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _holder(ds: Dataset, frame: int, sequence: str, keyword: str) -> tuple[Dataset, str] | None:
    """The dataset holding ``keyword`` for ``frame``: per-frame group, shared group, then top level."""
    groups = (
        ("PerFrameFunctionalGroupsSequence", frame, "per-frame functional group"),
        ("SharedFunctionalGroupsSequence", 0, "shared functional group"),
    )
    for group_keyword, item_index, source in groups:
        group = ds.get(group_keyword)
        if group and item_index < len(group) and group[item_index].get(sequence):
            item = group[item_index].get(sequence)[0]
            if item.get(keyword) not in (None, ""):
                return item, source
    if ds.get(keyword) not in (None, ""):
        return ds, "top-level"
    return None


def _window(ds: Dataset, frame: int) -> _Window | None:
    found = _holder(ds, frame, "FrameVOILUTSequence", "WindowCenter")
    if found is None:
        return None
    item, source = found
    center, width = _first_number(item.get("WindowCenter")), _first_number(item.get("WindowWidth"))
    function = str(item.get("VOILUTFunction") or "LINEAR").upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    if center is None or width is None:
        return None
    # A window the standard forbids (LINEAR needs W >= 1, the others W > 0) is treated as absent.
    if not (width >= 1 if function == "LINEAR" else width > 0):
        return None
    return _Window(center, width, function, source)


def _frame_transform(ds: Dataset, frame: int, pixel_keyword: str) -> _FrameTransform:
    slope, intercept, rescale_source = 1.0, 0.0, None
    found = _holder(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    if found is not None:
        item, source = found
        slope = _first_number(item.get("RescaleSlope")) or 1.0
        intercept = _first_number(item.get("RescaleIntercept")) or 0.0
        rescale_source = source if (slope, intercept) != (1.0, 0.0) else None
    monochrome = int(ds.get("SamplesPerPixel", 1)) == 1
    stored_range, bits = None, None
    if pixel_keyword == "PixelData":
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        if monochrome:
            low, high = sorted((low * slope + intercept, high * slope + intercept))
        stored_range = (float(low), float(high))
    return _FrameTransform(
        slope=slope if monochrome else 1.0,
        intercept=intercept if monochrome else 0.0,
        rescale_source=rescale_source if monochrome else None,
        window=_window(ds, frame) if monochrome else None,  # VOI applies to greyscale only
        stored_range=stored_range,
        bits_stored=bits,
        invert=ds.get("PhotometricInterpretation") == "MONOCHROME1",
    )


def _spacing(ds: Dataset, frame: int) -> tuple[float, float] | None:
    """(row, column) spacing in mm: PixelSpacing (functional groups or top level), else ImagerPixelSpacing."""
    found = _holder(ds, frame, "PixelMeasuresSequence", "PixelSpacing")
    for values in (found[0].get("PixelSpacing") if found else None, ds.get("ImagerPixelSpacing")):
        if values is None or len(values) != 2:
            continue
        spacing = tuple(_first_number(v) for v in values)
        if all(v is not None and v > 0 for v in spacing):
            return spacing
    return None


def _pixel_keyword(stream, ds: Dataset, transfer_syntax: UID) -> str | None:
    """Name of the pixel data element at the stream position where ``dcmread(stop_before_pixels)`` stopped."""
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        # The deflated body is inflated in memory, so the file position tells nothing; trust the image module.
        return "PixelData" if "Rows" in ds else None
    tag = stream.read(4)
    if len(tag) < 4:
        return None
    return _PIXEL_TAGS.get(struct.unpack("<HH" if transfer_syntax.is_little_endian else ">HH", tag))


def _missing_package(transfer_syntax: UID) -> str:
    if transfer_syntax in JPEG2000TransferSyntaxes:
        return "pylibjpeg-openjpeg"
    if transfer_syntax in JPEGLSTransferSyntaxes:
        return "pyjpegls"
    return "pylibjpeg-libjpeg"


def _load(path: Path) -> tuple[Dataset, str]:
    """Parse everything but the pixel data and check the file is a decodable image; returns (dataset, pixel keyword)."""
    try:
        with path.open("rb") as stream:
            ds = pydicom.dcmread(stream, stop_before_pixels=True)
            transfer_syntax = ds.file_meta.get("TransferSyntaxUID")
            if transfer_syntax is None:
                raise CorruptFileError(path, "the DICOM file meta has no Transfer Syntax UID")
            keyword = _pixel_keyword(stream, ds, UID(transfer_syntax))
    except InvalidDicomError as exc:
        raise CorruptFileError(path, f"not a valid DICOM file: {exc}") from exc
    except CorruptFileError:
        raise
    except Exception as exc:  # pydicom raises many types on damaged headers
        raise CorruptFileError(path, f"damaged or truncated DICOM header: {type(exc).__name__}: {exc}") from exc
    if keyword is None:
        sop = ds.get("SOPClassUID")
        kind = f" ({UID(sop).name})" if sop else ""
        raise CorruptFileError(path, f"the DICOM object{kind} has no pixel data")
    rows, cols, frames = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0), int(ds.get("NumberOfFrames") or 1)
    if rows * cols * frames == 0:
        raise CorruptFileError(path, f"image has zero size: Rows={rows}, Columns={cols}, NumberOfFrames={frames}")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in _PHOTOMETRICS or int(ds.get("SamplesPerPixel", 1)) not in (1, 3):
        raise UnsupportedFormatError(
            path, f"photometric interpretation {photometric or '(missing)'!r} with SamplesPerPixel="
            f"{ds.get('SamplesPerPixel')} is not supported (greyscale or RGB/YBR only)"
        )
    transfer_syntax = UID(transfer_syntax)
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError as exc:
        raise UnsupportedFormatError(path, f"transfer syntax {transfer_syntax.name} ({transfer_syntax}) has no pixel "
                                     "data decoder") from exc
    if not decoder.is_available:
        raise MissingDependencyError(_missing_package(transfer_syntax), f"{path}: decoding {transfer_syntax.name}")
    return ds, keyword


def _decode(path: Path, ds: Dataset, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, frame) for the requested frames only, each decoded when reached.

    Frames are (rows, cols), or (rows, cols, 3) RGB for colour. The header is parsed once for all frames.
    """
    with path.open("rb") as stream:
        frames = iter_pixels(stream, indices=list(indices))
        try:
            for index in indices:
                try:
                    frame = next(frames)
                except Exception as exc:  # decoder plugins raise many types on damaged data
                    message = " ".join(str(exc).split()) or type(exc).__name__
                    transfer_syntax = ds.file_meta.TransferSyntaxUID.name
                    raise CorruptFileError(path, f"truncated or damaged pixel data, cannot decode frame {index} "
                                           f"({transfer_syntax}): {message}") from exc
                yield index, frame
        finally:
            frames.close()  # before the stream closes: pydicom seeks the stream back when its generator ends


def _stored_dtype(ds: Dataset, keyword: str) -> str:
    if keyword == "FloatPixelData":
        return "float32"
    if keyword == "DoubleFloatPixelData":
        return "float64"
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    return f"{'int' if signed else 'uint'}{max(8, int(ds.get('BitsAllocated') or 16))}"


def _stored_shape(ds: Dataset) -> tuple[int, ...]:
    shape = (int(ds.Rows), int(ds.Columns))
    if "NumberOfFrames" in ds:
        shape = (int(ds.NumberOfFrames or 1), *shape)
    samples = int(ds.get("SamplesPerPixel", 1))
    return (*shape, samples) if samples > 1 else shape


def _normalize(
    values: np.ndarray, transform: _FrameTransform, normalization: str, path: Path
) -> tuple[np.ndarray, str]:
    """Map rescaled values (H, W) to [0, 1] float32; returns the pixels and the description."""
    mode = transform.auto_mode() if normalization == "auto" else normalization
    if mode == "window":
        if transform.window is None:
            raise InputError(path, "normalization 'window' needs a VOI window (WindowCenter/WindowWidth at top "
                             "level or in the functional groups), and this file has none; use 'bits', 'minmax' "
                             "or 'percentile'")
        pixels, core = transform.window.apply(values), transform.window.describe()
    elif mode == "bits":
        if transform.stored_range is None:
            raise InputError(path, "float pixel data has no stored bit range; use 'minmax' or 'percentile'")
        pixels, core = scale_to_unit(values, *transform.stored_range), transform.bits_description()
    else:
        low, high, core = data_range(values, mode, path)
        pixels = scale_to_unit(values, low, high)
    if transform.invert:
        pixels = 1.0 - pixels
    return np.ascontiguousarray(pixels, dtype=np.float32), transform.describe(core)


class DicomReader(ImageReader):
    """DICOM files, recognised by the 'DICM' marker at byte 128 or by the suffix."""

    format = "dicom"
    suffixes = (".dcm", ".dicom")

    def matches_magic(self, head: bytes) -> bool:
        return head[128:132] == b"DICM"

    def read_header(self, path: Path, axis: int = 2) -> ImageHeader:
        ds, keyword = _load(path)
        transform = _frame_transform(ds, 0, keyword)
        transfer_syntax = ds.file_meta.TransferSyntaxUID
        return ImageHeader(
            path=str(path),
            format=self.format,
            stored_shape=_stored_shape(ds),
            n_slices=int(ds.get("NumberOfFrames") or 1),
            rows=int(ds.Rows),
            cols=int(ds.Columns),
            stored_dtype=_stored_dtype(ds, keyword),
            bits_stored=transform.bits_stored,
            modality=ds.get("Modality") or None,
            photometric=str(ds.PhotometricInterpretation),
            transfer_syntax=transfer_syntax.name,
            compressed=transfer_syntax.is_compressed,
            spacing=_spacing(ds, 0),
            normalization=transform.describe_auto(),
        )

    def iter_slices(self, path: Path, indices: Sequence[int], axis: int, normalization: str) -> Iterator[ScanImage]:
        ds, keyword = _load(path)
        for index, frame in _decode(path, ds, indices):
            transform = _frame_transform(ds, index, keyword)
            values = luma(frame) if frame.ndim == 3 else frame.astype(np.float32)
            if transform.rescale_source:
                values = values * np.float32(transform.slope) + np.float32(transform.intercept)
            pixels, description = _normalize(values, transform, normalization, path)
            yield ScanImage(pixels, ImageMeta(
                path=str(path),
                format=self.format,
                modality=ds.get("Modality") or None,
                spacing=_spacing(ds, index),
                photometric=str(ds.PhotometricInterpretation),
                normalization=description,
                slice_index=index,
                n_slices=int(ds.get("NumberOfFrames") or 1),
                stored_shape=_stored_shape(ds),
                stored_dtype=_stored_dtype(ds, keyword),
            ))

    def read_labels(self, path: Path, index: int, axis: int) -> np.ndarray:
        ds, _ = _load(path)
        ((_, frame),) = _decode(path, ds, [index])
        return luma(frame) if frame.ndim == 3 else frame
