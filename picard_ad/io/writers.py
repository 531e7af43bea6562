"""Writers that never leave a half-written file: every output goes to a temporary sibling, then is renamed.

A process killed while writing leaves its temporary behind (``.NAME.XXXXXXXX.partSUFFIX``, hidden, so folder
scans skip it); ``remove_stale_temporaries`` deletes those a later run finds. The JSON written beside outputs is
strict (``strict_json``): no bare NaN or Infinity, which most JSON readers refuse.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: temporaries cannot be locked, and only old ones are removed
    fcntl = None

_UMASK = os.umask(0)
os.umask(_UMASK)
# ".NAME." + 8 characters of tempfile's alphabet + ".part" + the target's suffixes (".tmp" without any)
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.part\..+$")
UNLOCKED_STALE_AGE_S = 24 * 3600  # without file locks, a temporary this old is taken as abandoned


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    The temporary name keeps the suffix so writers that choose a format by suffix still work. While it exists,
    the temporary is locked (``flock``) by this process, which tells ``remove_stale_temporaries`` of other runs
    that it is being written; the lock goes when the process ends, however it ends.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    tmp = Path(tmp_name)
    if fcntl is None:  # no lock to hold; and Windows cannot rename a file that is open
        os.close(fd)
    try:
        if fcntl is not None:
            with contextlib.suppress(OSError):  # a file system without locks: other runs then leave it alone
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes the file private; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        if fcntl is not None:
            os.close(fd)  # releases the lock, after the rename or removal


def _being_written(path: Path) -> bool:
    """Whether a live process holds the lock that ``atomic_path`` takes on its temporaries."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # gone or unreadable: leave it alone
    try:
        # Shared, so that it works on a read-only descriptor on NFS too; it conflicts with the writer's lock.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the lock just taken
    return False


def remove_stale_temporaries(folder: str | Path, started: float) -> list[Path]:
    """Delete the temporaries that killed writers of ``atomic_path`` left in ``folder`` (not in subfolders).

    The rule: a file is removed only when its name is one ``atomic_path`` makes, it was last modified before
    ``started`` (the current run's start, a ``time.time()``), so nothing this run writes is touched, and no
    process holds its lock, so no other running process is still writing it. Without file locks (not POSIX),
    the file must also be older than UNLOCKED_STALE_AGE_S. Returns the removed paths.
    """
    folder = Path(folder)
    removed = []
    try:
        candidates = [entry for entry in os.scandir(folder) if _TEMPORARY.match(entry.name) and entry.is_file()]
    except OSError:
        return removed
    for entry in candidates:
        path = Path(entry.path)
        try:
            modified = path.stat().st_mtime
        except OSError:
            continue
        if modified >= started or (fcntl is None and modified > started - UNLOCKED_STALE_AGE_S):
            continue
        if _being_written(path):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def file_digest(path: str | Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex digest}`` of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": Path(path).stat().st_size, "sha256": digest.hexdigest()}


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float (Python or NumPy) replaced by None, NumPy scalars and arrays
    made plain, tuples made lists, and paths made strings: what ``json.dumps(..., allow_nan=False)`` accepts."""
    if isinstance(value, dict):
        return {str(key): strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def dumps_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value`` (see ``strict_json``); other values than JSON's are written with str()."""
    return json.dumps(strict_json(value), allow_nan=False, default=str, **kwargs)


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
