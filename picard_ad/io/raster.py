"""PNG and JPEG (Pillow) and TIFF (tifffile) readers, 8 and 16 bit, greyscale or colour.

Colour is converted to grey with ITU-R BT.601 luma (alpha ignored). ``normalization="auto"`` divides by the stored
range (255 for 8 bit, 65535 for 16 bit, 2**BitsPerSample - 1 for TIFF); float data is scaled min-max. TIFF
MinIsWhite is inverted so that bright means dense. Multi-page TIFF pages are slices; PNG and JPEG have one slice.
Pixel spacing is not read from raster files (``spacing`` is None).

Pillow keeps 16-bit greyscale PNGs as 16 bit ("I;16"), but silently reduces 16-bit colour and grey+alpha PNGs to
8 bits, so those are refused rather than read at a lower depth.

Pillow's own size limit (``Image.MAX_IMAGE_PIXELS``, a guard against decompression bombs that refuses images over
about 179 megapixels) is replaced by picard-ad's, which follows the memory available: see
``picard_ad.io.base.check_image_size``. Both the header and the decoding are refused above it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

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
    check_image_size,
    data_range,
    luma,
    scale_to_unit,
)

_PIL_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class _Storage:
    """How a raster stores its grey values: ``stored_range`` None means float-like data without a fixed range."""

    label: str  # e.g. "uint16 grey", "8-bit luma of RGB"
    dtype: str
    bits: int
    stored_range: tuple[float, float] | None
    inverted: bool = False  # TIFF MinIsWhite

    def describe(self, core: str) -> str:
        return core + (", MinIsWhite inverted" if self.inverted else "")

    def describe_auto(self) -> str:
        if self.stored_range is None:
            return self.describe("min-max per image -> [0,1]")
        low, high = self.stored_range
        return self.describe(f"{self.label} range [{low:g}, {high:g}] -> [0,1]")

    def normalize(self, values: np.ndarray, normalization: str, path: Path) -> tuple[np.ndarray, str]:
        """Map grey values (H, W) to [0, 1] float32; returns the pixels and the description."""
        if normalization == "window":
            raise InputError(path, "normalization 'window' needs a DICOM VOI window; raster images have none")
        mode = ("bits" if self.stored_range else "minmax") if normalization == "auto" else normalization
        if mode == "bits":
            if self.stored_range is None:
                raise InputError(path, f"{self.dtype} data has no stored bit range; use 'auto', 'minmax' or "
                                 "'percentile'")
            pixels, description = scale_to_unit(values, *self.stored_range), self.describe_auto()
        else:
            low, high, core = data_range(values, mode, path)
            pixels, description = scale_to_unit(values, low, high), self.describe(core)
        if self.inverted:
            pixels = 1.0 - pixels
        return np.ascontiguousarray(pixels, dtype=np.float32), description


def _pillow_storage(mode: str) -> _Storage:
    if mode == "1":
        return _Storage("1-bit grey", "bool", 1, (0.0, 1.0))
    if mode in ("L", "LA"):
        return _Storage("uint8 grey", "uint8", 8, (0.0, 255.0))
    if mode in _PIL_SIXTEEN_BIT:
        return _Storage("uint16 grey", "uint16", 16, (0.0, 65535.0))
    if mode in ("I", "F"):
        return _Storage(f"32-bit {mode}", "int32" if mode == "I" else "float32", 32, None)
    return _Storage(f"uint8 luma of {mode}", "uint8", 8, (0.0, 255.0))


def _pillow_grey(image: Image.Image) -> np.ndarray:
    """Grey values (H, W) of a decoded Pillow image, at the stored depth."""
    if image.mode == "1":
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("L", "LA"):
        return np.asarray(image.getchannel(0))
    if image.mode in _PIL_SIXTEEN_BIT:
        return np.asarray(image).astype(np.uint16)
    if image.mode in ("I", "F"):
        return np.asarray(image)
    return luma(np.asarray(image.convert("RGB")))


@contextlib.contextmanager
def _without_pillow_limit() -> Iterator[None]:
    """Lift Pillow's decompression-bomb limit inside the block; ``check_image_size`` takes its place.

    Pillow reads the limit from a module global when a file is opened, so this is not safe against threads
    opening images at the same moment with the limit in force (picard-ad's readers do not).
    """
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


class _PillowReader(ImageReader):
    """Single-image formats decoded by Pillow."""

    signature: bytes

    def matches_magic(self, head: bytes) -> bool:
        return head.startswith(self.signature)

    def _open(self, path: Path) -> Image.Image:
        try:
            with _without_pillow_limit():
                image = Image.open(path)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise CorruptFileError(path, f"cannot read the {self.format.upper()} header: {exc}") from exc
        try:
            if image.width * image.height == 0:
                raise CorruptFileError(path, f"image has zero size ({image.width} x {image.height})")
            check_image_size(path, image.height, image.width)
        except InputError:
            image.close()
            raise
        return image

    def _decoded(self, path: Path) -> Image.Image:
        image = self._open(path)
        try:
            with _without_pillow_limit():
                image.load()
        except (OSError, ValueError, SyntaxError) as exc:
            image.close()
            raise CorruptFileError(path, f"damaged or truncated {self.format.upper()} data: {exc}") from exc
        return image

    def read_header(self, path: Path, axis: int = 2) -> ImageHeader:
        with self._open(path) as image:
            storage = _pillow_storage(image.mode)
            channels = len(image.getbands())
            return ImageHeader(
                path=str(path),
                format=self.format,
                stored_shape=(image.height, image.width) + ((channels,) if channels > 1 else ()),
                n_slices=1,
                rows=image.height,
                cols=image.width,
                stored_dtype=storage.dtype,
                bits_stored=storage.bits,
                modality=None,
                photometric=image.mode,
                transfer_syntax=None,
                compressed=True,
                spacing=None,
                normalization=storage.describe_auto(),
            )

    def iter_slices(self, path: Path, indices: Sequence[int], axis: int, normalization: str) -> Iterator[ScanImage]:
        header = self.read_header(path)
        with self._decoded(path) as image:
            values = _pillow_grey(image)
        pixels, description = _pillow_storage(header.photometric).normalize(values, normalization, path)
        for index in indices:
            yield ScanImage(pixels, ImageMeta(
                path=str(path),
                format=self.format,
                modality=None,
                spacing=None,
                photometric=header.photometric,
                normalization=description,
                slice_index=index,
                n_slices=1,
                stored_shape=header.stored_shape,
                stored_dtype=header.stored_dtype,
            ))

    def read_labels(self, path: Path, index: int, axis: int) -> np.ndarray:
        with self._decoded(path) as image:
            if image.mode in ("P", "PA"):  # label maps store the label as the palette index
                return np.asarray(image.getchannel(0))
            return _pillow_grey(image)


class PngReader(_PillowReader):
    format = "png"
    suffixes = (".png",)
    signature = _PNG_SIGNATURE

    def _open(self, path: Path) -> Image.Image:
        with path.open("rb") as stream:
            head = stream.read(26)
        # IHDR: bit depth at byte 24, colour type at byte 25 (2 RGB, 4 grey+alpha, 6 RGBA).
        if head.startswith(_PNG_SIGNATURE) and len(head) == 26 and head[24] == 16 and head[25] in (2, 4, 6):
            raise UnsupportedFormatError(path, "16-bit colour (or grey+alpha) PNG: Pillow would reduce it to 8 bits; "
                                         "save it as a 16-bit greyscale PNG or as TIFF")
        return super()._open(path)


class JpegReader(_PillowReader):
    format = "jpeg"
    suffixes = (".jpg", ".jpeg")
    signature = b"\xff\xd8\xff"


def _tiff_storage(page: tifffile.TiffPage) -> _Storage:
    kind = "luma of RGB" if page.photometric.name == "RGB" else "grey"
    inverted = page.photometric.name == "MINISWHITE"
    bits, dtype = page.bitspersample, np.dtype(page.dtype)
    if np.issubdtype(dtype, np.floating):
        return _Storage(f"{dtype} {kind}", str(dtype), bits, None, inverted)
    signed = np.issubdtype(dtype, np.signedinteger)
    stored_range = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else (0.0, 2.0**bits - 1)
    return _Storage(f"{bits}-bit {kind}", str(dtype), bits, stored_range, inverted)


def _tiff_grey(page: tifffile.TiffPage, path: Path) -> np.ndarray:
    """Decode one TIFF page to grey values (H, W)."""
    photometric = page.photometric.name
    if photometric not in ("MINISBLACK", "MINISWHITE", "RGB"):
        raise UnsupportedFormatError(path, f"TIFF photometric {photometric} is not supported (grey or RGB only)")
    if page.compression not in tifffile.TIFF.DECOMPRESSORS:
        raise MissingDependencyError("imagecodecs", f"{path}: decoding {page.compression.name}-compressed TIFF")
    try:
        array = page.asarray()
    except Exception as exc:  # tifffile raises many types on damaged strips or tiles
        raise CorruptFileError(path, f"damaged or truncated TIFF data: {type(exc).__name__}: {exc}") from exc
    if page.axes.startswith("S"):  # planar configuration "separate": samples first
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3:
        array = luma(array) if photometric == "RGB" else array[..., 0]
    return array


class TiffReader(ImageReader):
    format = "tiff"
    suffixes = (".tif", ".tiff")

    def matches_magic(self, head: bytes) -> bool:
        return head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")

    @staticmethod
    def _open(path: Path) -> tifffile.TiffFile:
        try:
            tiff = tifffile.TiffFile(path)
        except Exception as exc:  # tifffile raises many types on damaged headers
            raise CorruptFileError(path, f"cannot read the TIFF header: {type(exc).__name__}: {exc}") from exc
        if len(tiff.pages) == 0:
            tiff.close()
            raise CorruptFileError(path, "TIFF file has no pages")
        return tiff

    def read_header(self, path: Path, axis: int = 2) -> ImageHeader:
        with self._open(path) as tiff:
            page, n_pages = tiff.pages[0], len(tiff.pages)
            rows, cols = int(page.imagelength), int(page.imagewidth)
            if rows * cols == 0:
                raise CorruptFileError(path, f"image has zero size ({cols} x {rows})")
            storage = _tiff_storage(page)
            return ImageHeader(
                path=str(path),
                format=self.format,
                stored_shape=((n_pages,) if n_pages > 1 else ()) + tuple(page.shape),
                n_slices=n_pages,
                rows=rows,
                cols=cols,
                stored_dtype=storage.dtype,
                bits_stored=storage.bits,
                modality=None,
                photometric=page.photometric.name,
                transfer_syntax=None,
                compressed=page.compression.name != "NONE",
                spacing=None,
                normalization=storage.describe_auto(),
            )

    def iter_slices(self, path: Path, indices: Sequence[int], axis: int, normalization: str) -> Iterator[ScanImage]:
        header = self.read_header(path)
        with self._open(path) as tiff:
            for index in indices:
                page = tiff.pages[index]
                pixels, description = _tiff_storage(page).normalize(_tiff_grey(page, path), normalization, path)
                yield ScanImage(pixels, ImageMeta(
                    path=str(path),
                    format=self.format,
                    modality=None,
                    spacing=None,
                    photometric=page.photometric.name,
                    normalization=description,
                    slice_index=index,
                    n_slices=header.n_slices,
                    stored_shape=header.stored_shape,
                    stored_dtype=str(np.dtype(page.dtype)),
                ))

    def read_labels(self, path: Path, index: int, axis: int) -> np.ndarray:
        with self._open(path) as tiff:
            return _tiff_grey(tiff.pages[index], path)
