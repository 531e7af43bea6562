"""NIfTI reader (nibabel): 2D images and 3D volumes read as 2D slices along a chosen axis.

The stored array axes are kept as they are, with no reorientation to RAS or any other convention: slice ``i``
along ``axis`` is ``data[..., i, ...]`` and its rows are the first remaining stored axis. A heatmap computed on
a slice can therefore be written back into an array of the input's shape and saved with the input's affine.

``normalization="auto"`` is volume-wide, so that slices of one volume are comparable: values are clipped to
[volume minimum, volume 99.9th percentile] and scaled to [0, 1]; this reads the whole volume into memory, as
does reading several slices at once. Trailing axes of length 1 beyond the third are ignored; true 4D (and
higher) images are refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import nibabel
import numpy as np

from picard_ad.errors import CorruptFileError, InputError, UnsupportedFormatError
from picard_ad.io.base import (
    ImageHeader,
    ImageMeta,
    ImageReader,
    ScanImage,
    data_range,
    require_finite,
    scale_to_unit,
)

VOLUME_PERCENTILE = 99.9  # upper clip of normalization="auto", over the whole volume
_UNIT_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001, "unknown": 1.0}  # unknown: NIfTI practice is mm


class _Volume:
    """An opened NIfTI file: the nibabel image plus its effective (2D or 3D) shape."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.image = nibabel.load(path)
        except Exception as exc:  # nibabel raises many types on damaged or truncated headers
            raise CorruptFileError(path, f"cannot read the NIfTI header: {type(exc).__name__}: {exc}") from exc
        shape = tuple(int(n) for n in self.image.shape)
        effective = shape
        while len(effective) > 3 and effective[-1] == 1:
            effective = effective[:-1]
        if len(effective) > 3:
            raise UnsupportedFormatError(path, f"{len(effective)}D NIfTI (shape {shape}) is not supported; "
                                         "only 2D images and 3D volumes (save one volume per file)")
        if len(effective) < 2:
            raise UnsupportedFormatError(path, f"{len(effective)}D NIfTI (shape {shape}) is not an image")
        if 0 in effective:
            raise CorruptFileError(path, f"image has zero size (shape {shape})")
        self.stored_shape = shape
        self.shape = effective

    def n_slices(self, axis: int) -> int:
        return 1 if len(self.shape) == 2 else self.shape[axis]

    def slicer(self, index: int, axis: int) -> tuple:
        """Index of slice ``index`` along ``axis`` into an array of the effective shape."""
        slicer: list = [slice(None)] * len(self.shape)
        if len(self.shape) == 3:
            slicer[axis] = index
        return tuple(slicer)

    def read_slice(self, index: int, axis: int) -> np.ndarray:
        """Stored values (after the NIfTI scl_slope/scl_inter) of one slice, (rows, cols)."""
        return self._read(self.slicer(index, axis))

    def read_all(self) -> np.ndarray:
        """The whole image in its effective (2D or 3D) shape."""
        return self._read((slice(None),) * len(self.shape))

    def _read(self, slicer: tuple) -> np.ndarray:
        # Trailing length-1 axes that were dropped from the effective shape are indexed at 0.
        full = slicer + (0,) * (len(self.stored_shape) - len(self.shape))
        try:
            return np.asarray(self.image.dataobj[full])
        except Exception as exc:  # truncated or damaged data block (gzip, short file)
            raise CorruptFileError(self.path, f"cannot read the NIfTI data: {type(exc).__name__}: {exc}") from exc

    def spacing(self, axis: int) -> tuple[float, float] | None:
        """(row, column) voxel size in mm of slices along ``axis``."""
        zooms = [float(z) for z in self.image.header.get_zooms()[: len(self.shape)]]
        kept = zooms if len(self.shape) == 2 else [z for i, z in enumerate(zooms) if i != axis]
        scale = _UNIT_TO_MM.get(self.image.header.get_xyzt_units()[0], 1.0)
        return (kept[0] * scale, kept[1] * scale) if all(math.isfinite(z) and z > 0 for z in kept) else None

    def stored_range(self) -> tuple[float, float] | None:
        """Range of the on-disk integer type after scaling; None for float data."""
        dtype = self.image.get_data_dtype()
        if not np.issubdtype(dtype, np.integer):
            return None
        info = np.iinfo(dtype)
        slope, intercept = self.image.header.get_slope_inter()
        slope = 1.0 if slope is None else slope
        intercept = 0.0 if intercept is None else intercept
        low, high = sorted((info.min * slope + intercept, info.max * slope + intercept))
        return float(low), float(high)


class NiftiReader(ImageReader):
    """NIfTI-1/2 files (.nii, .nii.gz)."""

    format = "nifti"
    suffixes = (".nii", ".nii.gz")

    def matches_magic(self, head: bytes) -> bool:
        return head[344:348] == b"n+1\0" or head[4:8] == b"n+2\0"

    def read_header(self, path: Path, axis: int = 2) -> ImageHeader:
        volume = _Volume(path)
        rows, cols = volume.shape if len(volume.shape) == 2 else [n for i, n in enumerate(volume.shape) if i != axis]
        return ImageHeader(
            path=str(path),
            format=self.format,
            stored_shape=volume.stored_shape,
            n_slices=volume.n_slices(axis),
            rows=rows,
            cols=cols,
            stored_dtype=str(volume.image.get_data_dtype()),
            bits_stored=None,
            modality=None,
            photometric=None,
            transfer_syntax=None,
            compressed=path.name.lower().endswith(".gz"),
            spacing=volume.spacing(axis),
            normalization=f"volume min..{VOLUME_PERCENTILE:g}th percentile -> [0,1], clipped",
        )

    def iter_slices(self, path: Path, indices: Sequence[int], axis: int, normalization: str) -> Iterator[ScanImage]:
        volume = _Volume(path)
        dtype = volume.image.get_data_dtype()
        if normalization == "window":
            raise InputError(path, "normalization 'window' needs a DICOM VOI window; NIfTI files have none")
        if normalization == "bits" and volume.stored_range() is None:
            raise InputError(path, f"{dtype} data has no stored bit range; use 'auto', 'minmax' or 'percentile'")
        # The whole volume is read once when it is needed for the range or when several slices are wanted:
        # reading slices one by one from a .nii.gz would decompress the file again for every slice.
        data = volume.read_all() if normalization == "auto" or len(indices) > 1 else None
        if normalization == "auto":
            require_finite(data, path)
            low, high = float(data.min()), float(np.percentile(data, VOLUME_PERCENTILE))
            description = f"volume min..{VOLUME_PERCENTILE:g}th percentile [{low:g}, {high:g}] -> [0,1], clipped"
        elif normalization == "bits":
            low, high = volume.stored_range()
            description = f"{dtype} range [{low:g}, {high:g}] -> [0,1]"
        for index in indices:
            values = volume.read_slice(index, axis) if data is None else data[volume.slicer(index, axis)]
            if normalization in ("minmax", "percentile"):
                low, high, description = data_range(values, normalization, path)
            else:
                require_finite(values, path)
            yield ScanImage(np.ascontiguousarray(scale_to_unit(values, low, high)), ImageMeta(
                path=str(path),
                format=self.format,
                modality=None,
                spacing=volume.spacing(axis),
                photometric=None,
                normalization=description,
                slice_index=index,
                n_slices=volume.n_slices(axis),
                stored_shape=volume.stored_shape,
                stored_dtype=str(dtype),
            ))

    def read_labels(self, path: Path, index: int, axis: int) -> np.ndarray:
        return _Volume(path).read_slice(index, axis)
