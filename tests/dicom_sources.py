"""Source DICOMs for the DICOM results tests and how to read results back (importable: tests/ is on the path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

BREAST_TOMOSYNTHESIS = "1.2.840.10008.5.1.4.1.1.13.1.3"


def tomosynthesis(path: Path, frames: int = 3, rows: int = 24, cols: int = 20, seed: int = 0) -> Path:
    """A small breast tomosynthesis volume with the enhanced geometry of a real one: a Frame of Reference, shared
    plane orientation and pixel measures (0.1 mm, tilted about z so that orientation matters), a plane position
    per frame 1 mm apart along the normal."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BREAST_TOMOSYNTHESIS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = BREAST_TOMOSYNTHESIS, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "MG", "PHANTOM", "PHANTOM^"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = [0.6, 0.8, 0.0, -0.8, 0.6, 0.0]
    measures.PixelSpacing, measures.SliceThickness = [0.1, 0.1], 1.0
    shared = Dataset()
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orientation], [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for index in range(frames):
        position, item = Dataset(), Dataset()
        position.ImagePositionPatient = [10.0, -5.0, 2.0 + index]
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.random.default_rng(seed).integers(0, 4096, (frames, rows, cols), dtype=np.uint16).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def pydicom_file(name: str) -> Path:
    """A file of pydicom's test data (or of the ``pydicom-data`` package, never downloaded); skipped when absent."""
    found = get_testdata_file(name, download=False)
    if found is None:
        pytest.skip(f"pydicom test file {name} is not installed (pip install pydicom-data)")
    return Path(found)


def source_frames(result: Dataset) -> list[int]:
    """The 0-based source frame each frame of a derived multi-frame object references (0 for single-frame
    sources), from its per-frame Derivation Image Sequence."""
    return [int(item.DerivationImageSequence[0].SourceImageSequence[0].get("ReferencedFrameNumber", 1)) - 1
            for item in result.PerFrameFunctionalGroupsSequence]  # fmt: skip


def referenced_instances(result: Dataset) -> set[str]:
    """SOP Instance UIDs of the Referenced Series Sequence."""
    return {item.ReferencedSOPInstanceUID for series in result.ReferencedSeriesSequence
            for item in series.ReferencedInstanceSequence}  # fmt: skip


def source_position(source: Dataset, frame: int) -> list[float] | None:
    """ImagePositionPatient of a source frame (per-frame group for enhanced objects, else top level)."""
    if "PerFrameFunctionalGroupsSequence" in source:
        return [float(v) for v in source.PerFrameFunctionalGroupsSequence[frame].PlanePositionSequence[0]
                .ImagePositionPatient]  # fmt: skip
    position = source.get("ImagePositionPatient")
    return None if position is None else [float(v) for v in position]
