"""Parametric Maps and Segmentations of heatmaps (``picard_ad.io.dicom_results``), read back with highdicom and
pydicom: same Frame of Reference and geometry as the source, references to it, values of the heatmap."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_sources import pydicom_file, referenced_instances, source_frames, source_position, tomosynthesis

from picard_ad.errors import InputError
from picard_ad.io.dicom_results import (
    ResultProvenance,
    parametric_map,
    parametric_map_refusal,
    read_source,
    save_dataset,
    segmentation,
)

PROVENANCE = ResultProvenance(method="brightness", score="brightness", version="9.9.9", model_sha256="ab" * 32)
THRESHOLD = 0.6


def fake_heatmaps(n_frames: int, rows: int, cols: int) -> np.ndarray:
    """Float32 values in [0, 1) with a NaN (an unscored pixel) in the first frame."""
    heatmaps = np.random.default_rng(7).random((n_frames, rows, cols), dtype=np.float32)
    heatmaps[0, 0, 0] = np.nan
    return heatmaps


def written(tmp_path, source_path, frames, heatmaps):
    """Write both results of ``heatmaps`` for ``frames`` of the source; read them back (pydicom datasets)."""
    source = read_source(source_path)
    save_dataset(parametric_map(source, heatmaps, frames, PROVENANCE, source_path), tmp_path / "pm.dcm")
    masks = heatmaps > THRESHOLD
    save_dataset(segmentation(source, masks, frames, PROVENANCE, THRESHOLD, source_path), tmp_path / "seg.dcm")
    return pydicom.dcmread(source_path, stop_before_pixels=True), pydicom.dcmread(tmp_path / "pm.dcm"), \
        pydicom.dcmread(tmp_path / "seg.dcm")  # fmt: skip


def check_geometry(source, result, frames):
    """The result shares the source's study and Frame of Reference, references it, and each of its frames lies at
    the plane position of the source frame it references."""
    assert result.StudyInstanceUID == source.StudyInstanceUID
    assert result.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert result.SeriesInstanceUID != source.SeriesInstanceUID
    assert referenced_instances(result) == {source.SOPInstanceUID}
    assert (result.Rows, result.Columns, int(result.NumberOfFrames)) == (source.Rows, source.Columns, len(frames))
    assert sorted(source_frames(result)) == sorted(frames)
    for item, frame in zip(result.PerFrameFunctionalGroupsSequence, source_frames(result)):
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert position == pytest.approx(source_position(source, frame))
        sop = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert sop == source.SOPInstanceUID
    measures = result.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    if "SharedFunctionalGroupsSequence" in source:
        expected = source.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        orientation = source.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    else:
        expected, orientation = source.PixelSpacing, source.ImageOrientationPatient
    assert [float(v) for v in measures.PixelSpacing] == pytest.approx([float(v) for v in expected])
    got = result.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    assert [float(v) for v in got] == pytest.approx([float(v) for v in orientation])


def check_values(pm, seg, frames, heatmaps):
    """The map holds the heatmap of each source frame exactly (float32, NaN kept), through an identity real world
    value mapping; the segmentation marks heatmap > threshold in the frame it references."""
    parsed = hd.pm.ParametricMap.from_dataset(pm)
    assert "FloatPixelData" in pm and pm.BitsAllocated == 32
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert (float(mapping.RealWorldValueSlope), float(mapping.RealWorldValueIntercept)) == (1.0, 0.0)
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "1"
    assert mapping.MeasurementUnitsCodeSequence[0].CodingSchemeDesignator == "UCUM"
    finite = heatmaps[np.isfinite(heatmaps)]
    assert float(mapping.DoubleFloatRealWorldValueFirstValueMapped) == float(finite.min())
    assert float(mapping.DoubleFloatRealWorldValueLastValueMapped) == float(finite.max())
    pixels = parsed.pixel_array.reshape(len(frames), pm.Rows, pm.Columns)
    by_frame = dict(zip(frames, heatmaps))
    for stored, frame in zip(pixels, source_frames(pm)):
        assert stored.dtype == np.float32
        np.testing.assert_array_equal(stored, by_frame[frame])  # exact, NaN where NaN

    parsed_seg = hd.seg.Segmentation.from_dataset(seg)
    assert seg.SegmentationType == "BINARY" and parsed_seg.get_segment_numbers() == [1]
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "anomaly" and segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "picard-ad brightness" and algorithm.AlgorithmVersion == "9.9.9"
    assert f"threshold={THRESHOLD!r}" in algorithm.AlgorithmParameters
    masks = seg.pixel_array.reshape(len(frames), seg.Rows, seg.Columns)
    for mask, frame in zip(masks, source_frames(seg)):
        np.testing.assert_array_equal(mask.astype(bool), by_frame[frame] > THRESHOLD)
    assert source_frames(seg) == source_frames(pm)  # the two objects list frames in the same order


def test_single_frame_ct(tmp_path):
    path = pydicom_file("CT_small.dcm")
    heatmaps = fake_heatmaps(1, 128, 128)
    source, pm, seg = written(tmp_path, path, [0], heatmaps)
    for result in (pm, seg):
        check_geometry(source, result, [0])
    check_values(pm, seg, [0], heatmaps)
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert pm.PatientID == source.PatientID and pm.Manufacturer == "picard-ad"


@pytest.mark.parametrize("frames", [[0, 1, 2, 3], [1, 3]], ids=["all", "subset"])
def test_tomosynthesis_volume_one_frame_per_source_frame(tmp_path, frames):
    path = tomosynthesis(tmp_path / "dbt.dcm", frames=4)
    heatmaps = fake_heatmaps(len(frames), 24, 20)
    source, pm, seg = written(tmp_path, path, frames, heatmaps)
    for result in (pm, seg):
        check_geometry(source, result, frames)
    check_values(pm, seg, frames, heatmaps)
    # highdicom finds each segmentation frame by the source frame it references
    parsed = hd.seg.Segmentation.from_dataset(seg)
    by_source = parsed.get_pixels_by_source_frame(source.SOPInstanceUID, [frame + 1 for frame in frames])
    np.testing.assert_array_equal(by_source[..., 0].astype(bool), heatmaps > THRESHOLD)


def test_real_enhanced_ct_volume(tmp_path):
    """eCT_Supplemental.dcm (pydicom-data, the realdata extra): a real enhanced CT with per-frame positions."""
    path = pydicom_file("eCT_Supplemental.dcm")
    heatmaps = fake_heatmaps(2, 512, 512)
    source, pm, seg = written(tmp_path, path, [0, 1], heatmaps)
    for result in (pm, seg):
        check_geometry(source, result, [0, 1])
    check_values(pm, seg, [0, 1], heatmaps)


def test_source_without_geometry_gets_the_segmentation_only(tmp_path):
    path = pydicom_file("SC_rgb.dcm")  # secondary capture: no Frame of Reference, no position, no spacing
    source = read_source(path)
    assert "patient geometry" in parametric_map_refusal(source)
    heatmaps = fake_heatmaps(1, 100, 100)
    with pytest.raises(InputError, match="no patient geometry"):
        parametric_map(source, heatmaps, [0], PROVENANCE, path)
    save_dataset(segmentation(source, heatmaps > THRESHOLD, [0], PROVENANCE, THRESHOLD, path), tmp_path / "seg.dcm")
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert referenced_instances(seg) == {source.SOPInstanceUID} and "FrameOfReferenceUID" not in seg
    np.testing.assert_array_equal(seg.pixel_array.astype(bool), heatmaps[0] > THRESHOLD)


def test_unplaceable_sources_and_mismatched_heatmaps_are_one_line_errors(tmp_path):
    emri = pydicom_file("emri_small.dcm")  # enhanced MR of 10 frames whose functional groups were stripped
    source = read_source(emri)
    with pytest.raises(InputError, match="multi-frame source .10 frames. without per-frame geometry") as caught:
        segmentation(source, np.zeros((10, 64, 64), bool), list(range(10)), PROVENANCE, 0.5, emri)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(str(emri))
    ct = read_source(pydicom_file("CT_small.dcm"))
    with pytest.raises(InputError, match=r"heatmaps of shape \(1, 64, 64\) do not match .* of 128 x 128"):
        parametric_map(ct, np.zeros((1, 64, 64), np.float32), [0], PROVENANCE, "ct")
    del ct.PixelSpacing
    with pytest.raises(InputError, match="lacks PixelSpacing"):
        parametric_map(ct, np.zeros((1, 128, 128), np.float32), [0], PROVENANCE, "ct")
    volume = read_source(tomosynthesis(tmp_path / "dbt.dcm", frames=2))
    with pytest.raises(InputError, match="not distinct frames of the 2"):
        parametric_map(volume, np.zeros((1, 24, 20), np.float32), [2], PROVENANCE, "dbt")
