"""Writers that never leave a half-written file: every output goes to a temporary sibling, then is renamed."""

from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    The temporary name keeps the suffix so writers that choose a format by suffix still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes the file private; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _to_uint(image: np.ndarray, bits: int) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim < 2 or not np.isfinite(image).all():
        raise ValueError("image must be a finite array of at least 2 dimensions")
    top = (1 << bits) - 1
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.round(np.clip(image, 0.0, 1.0) * top).astype(dtype)


def write_png(path: str | Path, image: np.ndarray, bit_depth: int = 16) -> None:
    """Write a (H, W) float image in [0, 1] as an 8- or 16-bit greyscale PNG."""
    from PIL import Image

    if bit_depth not in (8, 16):
        raise ValueError("bit_depth must be 8 or 16")
    pixels = _to_uint(image, bit_depth)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def write_mask_png(path: str | Path, mask: np.ndarray) -> None:
    """Write a boolean (H, W) mask as an 8-bit PNG with values 0 and 255."""
    write_png(path, np.asarray(mask, dtype=bool).astype(np.float64), bit_depth=8)


def write_dicom(
    path: str | Path,
    image: np.ndarray,
    *,
    bits_stored: int = 12,
    modality: str = "MG",
    patient_id: str = "PHANTOM",
    description: str = "picard-ad synthetic phantom",
    pixel_spacing_mm: float = 0.1,
) -> None:
    """Write a float image in [0, 1] as an uncompressed MONOCHROME2 DICOM.

    Args:
        image: (H, W) for one frame or (F, H, W) for a multi-frame (tomosynthesis-like) object.
        bits_stored: stored bit depth; the full range is written as the VOI window.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = _to_uint(image, bits_stored).astype(np.uint16)
    multi_frame = pixels.ndim == 3
    sop_class = (
        "1.2.840.10008.5.1.4.1.1.13.1.3"  # Breast Tomosynthesis Image Storage
        if multi_frame
        else "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation
    )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    now = datetime.datetime.now()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = patient_id
    ds.SeriesDescription = description
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if multi_frame:
        ds.NumberOfFrames = pixels.shape[0]
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
    top = (1 << bits_stored) - 1
    ds.WindowCenter = top / 2
    ds.WindowWidth = top + 1
    ds.PixelData = pixels.tobytes()
    with atomic_path(path) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
