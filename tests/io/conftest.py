"""Builders of small DICOM files for the reader tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

BREAST_TOMOSYNTHESIS = "1.2.840.10008.5.1.4.1.1.13.1.3"
DIGITAL_MAMMOGRAPHY = "1.2.840.10008.5.1.4.1.1.1.2"


def _window_item(center: float, width: float) -> Dataset:
    item = Dataset()
    item.WindowCenter = center
    item.WindowWidth = width
    return item


def build_dicom(
    pixels: np.ndarray,
    *,
    bits_stored: int = 12,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    voi_function: str | None = None,
    rescale: tuple[float, float] | None = None,
    shared_window: tuple[float, float] | None = None,
    frame_windows: list[tuple[float, float]] | None = None,
    frame_rescales: list[tuple[float, float]] | None = None,
    shared_spacing: tuple[float, float] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    imager_spacing: tuple[float, float] | None = None,
    laterality: str | None = None,
) -> Dataset:
    """A DICOM dataset holding ``pixels``: (H, W) single frame or (F, H, W) multi-frame, native encoding."""
    pixels = np.asarray(pixels)
    multi_frame = pixels.ndim == 3
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BREAST_TOMOSYNTHESIS if multi_frame else DIGITAL_MAMMOGRAPHY
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientID = "PHANTOM"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if multi_frame:
        ds.NumberOfFrames = pixels.shape[0]
    ds.BitsAllocated = 16 if bits_stored > 8 else 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if imager_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_spacing)
    if laterality is not None:
        ds.ImageLaterality = laterality
    if shared_window is not None or shared_spacing is not None:
        shared = Dataset()
        if shared_window is not None:
            shared.FrameVOILUTSequence = Sequence([_window_item(*shared_window)])
        if shared_spacing is not None:
            measures = Dataset()
            measures.PixelSpacing = list(shared_spacing)
            shared.PixelMeasuresSequence = Sequence([measures])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
    if frame_windows is not None or frame_rescales is not None:
        items = []
        for frame in range(pixels.shape[0]):
            item = Dataset()
            if frame_windows is not None:
                item.FrameVOILUTSequence = Sequence([_window_item(*frame_windows[frame])])
            if frame_rescales is not None:
                transform = Dataset()
                transform.RescaleSlope, transform.RescaleIntercept = frame_rescales[frame]
                transform.RescaleType = "US"
                item.PixelValueTransformationSequence = Sequence([transform])
            items.append(item)
        ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    dtype = (np.int16 if signed else np.uint16) if bits_stored > 8 else (np.int8 if signed else np.uint8)
    ds.PixelData = pixels.astype(dtype).tobytes()
    return ds


@pytest.fixture
def make_dicom(tmp_path: Path) -> Callable[..., Path]:
    """``make_dicom(name, pixels, compress=None, edit=None, **build_dicom options)`` writes a DICOM in tmp_path.

    ``compress`` is (transfer syntax UID, encoding plugin); ``edit`` may change the dataset before it is written.
    """

    def make(
        name: str,
        pixels: np.ndarray,
        compress: tuple[str, str] | None = None,
        edit: Callable[[Dataset], None] | None = None,
        **options,
    ) -> Path:
        ds = build_dicom(pixels, **options)
        if compress is not None:
            uid, plugin = compress
            ds.compress(uid, encoding_plugin=plugin)
        if edit is not None:
            edit(ds)
        path = tmp_path / name
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        return path

    return make
