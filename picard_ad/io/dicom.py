"""DICOM reader (pydicom 3): single- and multi-frame, native or compressed, decoding one frame at a time.

Per frame: decode (only that frame), the Modality LUT (a Modality LUT Sequence, applied by pydicom, or Rescale
Slope/Intercept), then the VOI transform mapped to [0, 1]: the window of the DICOM standard (PS3.3 C.11.2.1.2:
LINEAR, LINEAR_EXACT or SIGMOID), or a VOI LUT Sequence (applied by pydicom) when there is no window, or else the
stored bit range; MONOCHROME1 is inverted so that dense tissue and bone are bright. Rescale, window and pixel
spacing are looked up per frame in PerFrameFunctionalGroupsSequence, then SharedFunctionalGroupsSequence, then
at the top level (enhanced multi-frame objects such as breast tomosynthesis keep them in the functional groups).

Values that cannot be used as they stand (a zero or malformed RescaleSlope, an unknown VOILUTFunction, a
malformed window, an unusable LUT) are replaced by the standard's defaults, and each such decision is recorded in
``notes`` of the header and of every slice (and reported once per file as a ReadWarning).

The header is parsed and checked without the pixel data: the pixel data of native (uncompressed) files must hold
the bytes that Rows x Columns x frames x samples x BitsAllocated needs, so that ``read_header`` refuses what
decoding would refuse. Deflated files, and files whose body is encoded otherwise than their transfer syntax says,
are parsed whole in memory; the others are decoded from the file one frame at a time.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder, iter_pixels
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
    one_line,
    scale_to_unit,
)

_PIXEL_TAGS = {
    (0x7FE0, 0x0010): "PixelData",
    (0x7FE0, 0x0008): "FloatPixelData",
    (0x7FE0, 0x0009): "DoubleFloatPixelData",
}
_PHOTOMETRICS = {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}
_LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_UNDEFINED_LENGTH = 0xFFFFFFFF
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


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
class _Lut:
    """The first item of a Modality or VOI LUT Sequence that pydicom can apply; ``output_range`` is the lowest
    and highest entry of its LUT Data, which is mapped to [0, 1]."""

    kind: str  # "Modality LUT" or "VOI LUT"
    entries: int
    first: int
    output_range: tuple[float, float]

    def describe(self) -> str:
        low, high = self.output_range
        return f"{self.kind} ({self.entries} entries from {self.first}) -> [{low:g}, {high:g}]"


@dataclass(frozen=True)
class _FrameTransform:
    """Everything needed to map one frame's stored values to [0, 1], and the decisions taken to get it."""

    slope: float
    intercept: float
    rescale_source: str | None  # None when there is no rescale
    modality_lut: _Lut | None  # replaces the rescale
    window: _Window | None
    voi_lut: _Lut | None  # used when there is no window
    stored_range: tuple[float, float] | None  # stored range after the Modality LUT; None for float pixel data
    bits_stored: int | None
    invert: bool  # MONOCHROME1
    notes: tuple[str, ...]

    def auto_mode(self) -> str:
        return "window" if self.window or self.voi_lut else "bits" if self.stored_range else "minmax"

    def describe(self, core: str) -> str:
        prefix = ""
        if self.modality_lut:
            prefix = self.modality_lut.describe() + ", "
        elif self.rescale_source:
            prefix = f"rescale slope={self.slope:g} intercept={self.intercept:g} ({self.rescale_source}), "
        return prefix + core + (", MONOCHROME1 inverted" if self.invert else "")

    def voi_description(self) -> str:
        return self.window.describe() if self.window else f"{self.voi_lut.describe()} -> [0,1]"

    def describe_auto(self) -> str:
        """What normalization="auto" does, without looking at pixel values."""
        mode = self.auto_mode()
        if mode == "window":
            return self.describe(self.voi_description())
        return self.describe(self.bits_description() if mode == "bits" else "min-max per image -> [0,1]")

    def bits_description(self) -> str:
        low, high = self.stored_range
        if self.modality_lut:
            return f"its output range [{low:g}, {high:g}] -> [0,1]"
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


def _shown(value: object) -> str:
    """A DICOM value as it is written in a note: '0', '1\\\\A', ''."""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return repr("\\".join(str(v) for v in value))
    return repr(str(value))


def _whole_number(ds: Dataset, keyword: str, default: int, path: Path) -> int:
    """An IS or US element as a non-negative int (``default`` when absent or empty); malformed is an error."""
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0 or (isinstance(value, str) and str(number) != value.strip().lstrip("+")):
        raise CorruptFileError(path, f"{keyword} {_shown(value)} is not a whole number")
    return number


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


def _window(ds: Dataset, frame: int, notes: list[str]) -> _Window | None:
    found = _holder(ds, frame, "FrameVOILUTSequence", "WindowCenter")
    if found is None:
        return None
    item, source = found
    raw_center, raw_width = item.get("WindowCenter"), item.get("WindowWidth")
    center, width = _first_number(raw_center), _first_number(raw_width)
    function = str(item.get("VOILUTFunction") or "LINEAR").upper()
    if function not in _VOI_FUNCTIONS:
        notes.append(f"VOILUTFunction {_shown(item.get('VOILUTFunction'))} ({source}) is not one of "
                     f"{', '.join(_VOI_FUNCTIONS)}; LINEAR used")  # fmt: skip
        function = "LINEAR"
    if center is None or width is None:
        bad = ("WindowCenter", raw_center) if center is None else ("WindowWidth", raw_width)
        notes.append(f"{bad[0]} {_shown(bad[1])} ({source}) is not a number; no VOI window used")
        return None
    # A window the standard forbids (LINEAR needs W >= 1, the others W > 0) is treated as absent.
    if not (width >= 1 if function == "LINEAR" else width > 0):
        needed = ">= 1" if function == "LINEAR" else "> 0"
        notes.append(f"WindowWidth {width:g} ({source}) is not valid for {function} (needs {needed}); no VOI "
                     "window used")  # fmt: skip
        return None
    return _Window(center, width, function, source)


def _lut(ds: Dataset, sequence: str, notes: list[str]) -> _Lut | None:
    """The usable first item of a top-level LUT sequence, with its output range found by pydicom's own
    application of it to every input value it maps; an unusable one is ignored with a note."""
    if not ds.get(sequence):
        return None
    kind = "Modality LUT" if sequence == "ModalityLUTSequence" else "VOI LUT"
    try:
        descriptor = [int(v) for v in ds[sequence][0].LUTDescriptor]
        entries, first, bits = descriptor[0] or 2**16, descriptor[1], descriptor[2]
        allowed = (8, 16) if kind == "Modality LUT" else (8, *range(10, 17))
        if bits not in allowed:
            raise ValueError(f"{bits} bits per entry is not supported")
        inputs = np.arange(first, first + entries, dtype=np.int64)
        table = apply_modality_lut(inputs, ds) if kind == "Modality LUT" else apply_voi_lut(inputs, ds)
        if np.shape(table) != (entries,):
            raise ValueError(f"LUT Data does not hold the {entries} entries of its LUT Descriptor")
    except Exception as exc:  # noqa: BLE001 - pydicom and numpy raise many types on malformed LUTs
        notes.append(f"{sequence} cannot be used ({one_line(exc) or type(exc).__name__}); ignored")
        return None
    return _Lut(kind, entries, first, (float(table.min()), float(table.max())))


def _rescale(ds: Dataset, frame: int, notes: list[str]) -> tuple[float, float, str | None]:
    """(slope, intercept, source) of the Rescale Slope/Intercept; source None when it changes nothing."""
    found = _holder(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    if found is None:
        return 1.0, 0.0, None
    item, source = found
    raw_slope, raw_intercept = item.get("RescaleSlope"), item.get("RescaleIntercept")
    slope = _first_number(raw_slope)
    if not slope:  # zero would map every pixel to the intercept
        notes.append(f"RescaleSlope {_shown(raw_slope)} ({source}) is zero or not a number; slope 1 used")
        slope = 1.0
    intercept = _first_number(raw_intercept)
    if intercept is None:
        notes.append(f"RescaleIntercept {_shown(raw_intercept or '')} ({source}) is missing or not a number; "
                     "intercept 0 used")  # fmt: skip
        intercept = 0.0
    return slope, intercept, source if (slope, intercept) != (1.0, 0.0) else None


def _frame_transform(ds: Dataset, frame: int, pixel_keyword: str) -> _FrameTransform:
    notes: list[str] = []
    monochrome = int(ds.get("SamplesPerPixel", 1)) == 1
    slope, intercept, rescale_source, modality_lut, window, voi_lut = 1.0, 0.0, None, None, None, None
    if monochrome:  # the Modality LUT and VOI apply to greyscale only
        modality_lut = _lut(ds, "ModalityLUTSequence", notes)
        if modality_lut is None:
            slope, intercept, rescale_source = _rescale(ds, frame, notes)
        elif "RescaleSlope" in ds:
            notes.append("both a Modality LUT Sequence and RescaleSlope; the Modality LUT used")
        window = _window(ds, frame, notes)
        if ds.get("VOILUTSequence"):
            if window is None:
                voi_lut = _lut(ds, "VOILUTSequence", notes)
            else:
                notes.append("both a VOI LUT Sequence and a VOI window; the window used")
    stored_range, bits = None, None
    if pixel_keyword == "PixelData":
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        if modality_lut is not None:
            low, high = modality_lut.output_range
        elif monochrome:
            low, high = sorted((low * slope + intercept, high * slope + intercept))
        stored_range = (float(low), float(high))
    return _FrameTransform(
        slope=slope,
        intercept=intercept,
        rescale_source=rescale_source,
        modality_lut=modality_lut,
        window=window,
        voi_lut=voi_lut,
        stored_range=stored_range,
        bits_stored=bits,
        invert=ds.get("PhotometricInterpretation") == "MONOCHROME1",
        notes=tuple(notes),
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


def _pixel_element(stream, implicit_vr: bool, little_endian: bool) -> tuple[str | None, int, bool]:
    """(keyword, value length, as declared) of the element at the stream position where
    ``dcmread(stop_before_pixels)`` stopped; keyword None when it is no pixel data element. ``as declared`` is
    False when an element that should have an explicit VR has none (pydicom then reads the body as implicit VR,
    but decodes frames from a file only in the declared encoding)."""
    order = "<" if little_endian else ">"
    tag = stream.read(4)
    if len(tag) < 4:
        return None, 0, True
    keyword = _PIXEL_TAGS.get(struct.unpack(order + "HH", tag))
    vr = b"" if implicit_vr else stream.read(2)
    if implicit_vr or not (len(vr) == 2 and vr.isalpha() and vr.isupper()):
        field = (vr + stream.read(4))[:4]
        return keyword, struct.unpack(order + "L", field)[0] if len(field) == 4 else 0, implicit_vr
    if vr in _LONG_LENGTH_VRS:
        field = stream.read(6)[2:]
        return keyword, struct.unpack(order + "L", field)[0] if len(field) == 4 else 0, True
    field = stream.read(2)
    return keyword, struct.unpack(order + "H", field)[0] if len(field) == 2 else 0, True


def _missing_package(transfer_syntax: UID) -> str:
    if transfer_syntax in JPEG2000TransferSyntaxes:
        return "pylibjpeg-openjpeg"
    if transfer_syntax in JPEGLSTransferSyntaxes:
        return "pyjpegls"
    return "pylibjpeg-libjpeg"


@dataclass(frozen=True)
class _File:
    """A DICOM file's parsed header and how its pixel data is reached.

    in_memory: ``ds`` holds the pixel data too (deflated files, and bodies encoded otherwise than the transfer
        syntax says, which pydicom decodes only from a parsed dataset); otherwise frames are decoded from the
        file one at a time.
    """

    ds: Dataset
    keyword: str
    n_frames: int
    in_memory: bool

    @property
    def transfer_syntax(self) -> UID:
        return UID(self.ds.file_meta.TransferSyntaxUID)


def _parse(path: Path) -> tuple[Dataset, str | None, int | None, int | None, bool]:
    """(dataset, pixel keyword, declared pixel value length, bytes left in the file after its element header,
    in_memory); lengths are None for a dataset parsed whole."""
    with path.open("rb") as stream:
        ds = pydicom.dcmread(stream, stop_before_pixels=True)
        transfer_syntax = ds.file_meta.get("TransferSyntaxUID")
        if transfer_syntax is None:
            raise CorruptFileError(path, "the DICOM file meta has no Transfer Syntax UID")
        transfer_syntax = UID(transfer_syntax)
        if transfer_syntax != DeflatedExplicitVRLittleEndian:  # deflated: the file position tells nothing
            keyword, length, as_declared = _pixel_element(
                stream, transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
            )
            if as_declared:
                return ds, keyword, length, os.fstat(stream.fileno()).st_size - stream.tell(), False
    ds = pydicom.dcmread(path)
    keyword = next((name for name in _PIXEL_TAGS.values() if name in ds), None)
    return ds, keyword, None, None, True


def _native_length(ds: Dataset, keyword: str, n_frames: int) -> int:
    """Bytes that native pixel data of this header holds: Rows x Columns x frames x samples x BitsAllocated."""
    bits = {"FloatPixelData": 32, "DoubleFloatPixelData": 64}.get(keyword) or int(ds.get("BitsAllocated") or 16)
    samples = int(ds.get("SamplesPerPixel", 1))
    if str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
        samples = 2  # two chroma samples shared by each pair of pixels
    return (int(ds.Rows) * int(ds.Columns) * n_frames * samples * bits + 7) // 8


def _check_pixel_length(path: Path, file: _File, declared: int | None, available: int | None) -> None:
    """Refuse native pixel data shorter than its header needs, as decoding it would (compressed data is checked
    when decoded)."""
    if file.transfer_syntax.is_compressed:
        return
    needed = _native_length(file.ds, file.keyword, file.n_frames)
    shape = (f"{file.ds.Rows} x {file.ds.Columns} x {file.n_frames} frame(s) x "
             f"{file.ds.get('SamplesPerPixel', 1)} sample(s) x {file.ds.get('BitsAllocated')} bits")  # fmt: skip
    if declared is None:  # parsed whole
        held = len(file.ds[file.keyword].value or b"")
        if held < needed:
            raise CorruptFileError(path, f"pixel data holds {held} bytes, but the header ({shape}) needs {needed}")
        return
    if declared == _UNDEFINED_LENGTH:
        raise CorruptFileError(path, "native (uncompressed) pixel data has an undefined length")
    if available < min(declared, needed):
        raise CorruptFileError(path, f"truncated file: the pixel data ends after {available} of its {declared} "
                               f"bytes ({needed} needed for {shape})")  # fmt: skip
    if declared < needed:
        raise CorruptFileError(path, f"pixel data holds {declared} bytes, but the header ({shape}) needs {needed}: "
                               "the header does not describe the data")  # fmt: skip


def _load(path: Path) -> _File:
    """Parse everything but the pixel data and check the file is a decodable image of the size it declares."""
    try:
        ds, keyword, declared, available, in_memory = _parse(path)
    except InvalidDicomError as exc:
        raise CorruptFileError(path, f"not a valid DICOM file: {one_line(exc)}") from exc
    except CorruptFileError:
        raise
    except Exception as exc:  # pydicom raises many types on damaged headers
        raise CorruptFileError(path, f"damaged or truncated DICOM header: {type(exc).__name__}: "
                               f"{one_line(exc)}") from exc  # fmt: skip
    if keyword is None:
        sop = ds.get("SOPClassUID")
        kind = f" ({UID(sop).name})" if sop else ""
        raise CorruptFileError(path, f"the DICOM object{kind} has no pixel data")
    rows, cols = _whole_number(ds, "Rows", 0, path), _whole_number(ds, "Columns", 0, path)
    frames = _whole_number(ds, "NumberOfFrames", 1, path) or 1
    if rows * cols == 0:
        raise CorruptFileError(path, f"image has zero size: Rows={rows}, Columns={cols}, NumberOfFrames={frames}")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in _PHOTOMETRICS or int(ds.get("SamplesPerPixel", 1)) not in (1, 3):
        raise UnsupportedFormatError(
            path, f"photometric interpretation {photometric or '(missing)'!r} with SamplesPerPixel="
            f"{ds.get('SamplesPerPixel')} is not supported (greyscale or RGB/YBR only)"
        )
    file = _File(ds, keyword, frames, in_memory)
    transfer_syntax = file.transfer_syntax
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError as exc:
        raise UnsupportedFormatError(path, f"transfer syntax {transfer_syntax.name} ({transfer_syntax}) has no pixel "
                                     "data decoder") from exc
    if not decoder.is_available:
        raise MissingDependencyError(_missing_package(transfer_syntax), f"{path}: decoding {transfer_syntax.name}")
    _check_pixel_length(path, file, declared, available)
    return file


def _decode(path: Path, file: _File, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (index, frame) for the requested frames only, each decoded when reached.

    Frames are (rows, cols), or (rows, cols, 3) RGB for colour. The header is parsed once for all frames.
    """
    with contextlib.ExitStack() as stack:
        source = file.ds if file.in_memory else stack.enter_context(path.open("rb"))
        frames = iter_pixels(source, indices=list(indices))
        # Closed before the stream is: pydicom seeks the stream back when its generator ends.
        stack.callback(frames.close)
        for index in indices:
            try:
                frame = next(frames)
            except Exception as exc:  # decoder plugins raise many types on damaged data
                message = one_line(exc) or type(exc).__name__
                raise CorruptFileError(path, f"truncated or damaged pixel data, cannot decode frame {index} "
                                       f"({file.transfer_syntax.name}): {message}") from exc
            yield index, frame


def _stored_dtype(ds: Dataset, keyword: str) -> str:
    if keyword == "FloatPixelData":
        return "float32"
    if keyword == "DoubleFloatPixelData":
        return "float64"
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    return f"{'int' if signed else 'uint'}{max(8, int(ds.get('BitsAllocated') or 16))}"


def _stored_shape(file: _File) -> tuple[int, ...]:
    shape = (int(file.ds.Rows), int(file.ds.Columns))
    if "NumberOfFrames" in file.ds:
        shape = (file.n_frames, *shape)
    samples = int(file.ds.get("SamplesPerPixel", 1))
    return (*shape, samples) if samples > 1 else shape


def _modality_values(frame: np.ndarray, transform: _FrameTransform, ds: Dataset) -> np.ndarray:
    """The frame (H, W) or (H, W, 3) after the Modality LUT, as float32 (H, W); colour becomes its luma."""
    if frame.ndim == 3:
        return luma(frame)
    if transform.modality_lut:
        return apply_modality_lut(frame, ds).astype(np.float32)
    values = frame.astype(np.float32)
    if transform.rescale_source:
        values = values * np.float32(transform.slope) + np.float32(transform.intercept)
    return values


def _normalize(
    values: np.ndarray, transform: _FrameTransform, normalization: str, path: Path, ds: Dataset
) -> tuple[np.ndarray, str]:
    """Map values after the Modality LUT (H, W) to [0, 1] float32; returns the pixels and the description."""
    mode = transform.auto_mode() if normalization == "auto" else normalization
    if mode == "window":
        if transform.window is not None:
            pixels = transform.window.apply(values)
        elif transform.voi_lut is not None:
            # The VOI LUT maps whole numbers (the Modality LUT's output), so rescaled values are rounded first.
            mapped = apply_voi_lut(np.rint(values).astype(np.int64), ds, prefer_lut=True)
            pixels = scale_to_unit(mapped, *transform.voi_lut.output_range)
        else:
            raise InputError(path, "normalization 'window' needs a VOI window (WindowCenter/WindowWidth at top "
                             "level or in the functional groups) or a VOI LUT Sequence, and this file has none; "
                             "use 'bits', 'minmax' or 'percentile'")
        core = transform.voi_description()
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
        file = _load(path)
        ds = file.ds
        transform = _frame_transform(ds, 0, file.keyword)
        return ImageHeader(
            path=str(path),
            format=self.format,
            stored_shape=_stored_shape(file),
            n_slices=file.n_frames,
            rows=int(ds.Rows),
            cols=int(ds.Columns),
            stored_dtype=_stored_dtype(ds, file.keyword),
            bits_stored=transform.bits_stored,
            modality=ds.get("Modality") or None,
            photometric=str(ds.PhotometricInterpretation),
            transfer_syntax=file.transfer_syntax.name,
            compressed=file.transfer_syntax.is_compressed,
            spacing=_spacing(ds, 0),
            normalization=transform.describe_auto(),
            notes=transform.notes,
        )

    def iter_slices(self, path: Path, indices: Sequence[int], axis: int, normalization: str) -> Iterator[ScanImage]:
        file = _load(path)
        ds = file.ds
        for index, frame in _decode(path, file, indices):
            transform = _frame_transform(ds, index, file.keyword)
            values = _modality_values(frame, transform, ds)
            pixels, description = _normalize(values, transform, normalization, path, ds)
            yield ScanImage(pixels, ImageMeta(
                path=str(path),
                format=self.format,
                modality=ds.get("Modality") or None,
                spacing=_spacing(ds, index),
                photometric=str(ds.PhotometricInterpretation),
                normalization=description,
                slice_index=index,
                n_slices=file.n_frames,
                stored_shape=_stored_shape(file),
                stored_dtype=_stored_dtype(ds, file.keyword),
                notes=transform.notes,
            ))

    def read_labels(self, path: Path, index: int, axis: int) -> np.ndarray:
        file = _load(path)
        ((_, frame),) = _decode(path, file, [index])
        return luma(frame) if frame.ndim == 3 else frame
