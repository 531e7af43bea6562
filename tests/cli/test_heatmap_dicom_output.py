"""``picard-ad heatmap --dicom-output``: DICOM inputs also get a Parametric Map and a Segmentation over the source,
checked against the .npy heatmaps; resumed like the other outputs; other inputs get a warning."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from dicom_sources import pydicom_file, referenced_instances, source_frames, source_position, tomosynthesis

from picard_ad.cli import main
from picard_ad.io.writers import write_dicom, write_png
from picard_ad.methods import create_method


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    run = tmp_path_factory.mktemp("brightness")
    create_method("brightness", settings={"sigma": 2.0}).save(run)
    return run


def heatmap(*args):
    return CliRunner().invoke(main, ["heatmap", *[str(a) for a in args], "--quiet"], catch_exceptions=False)


def test_tomosynthesis_volume(model, tmp_path):
    source_path = tomosynthesis(tmp_path / "dbt.dcm", frames=3)
    out = tmp_path / "out"
    result = heatmap(source_path, "--model", model, "--out", out, "--dicom-output", "--segmentation-threshold", 0.5)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    heatmaps = {index: np.load(out / f"dbt_s{index:04d}_heatmap.npy") for index in range(3)}
    assert all(h.shape == (24, 20) and h.dtype == np.float32 for h in heatmaps.values())

    pm = pydicom.dcmread(out / "dbt_pmap.dcm")
    seg = pydicom.dcmread(out / "dbt_seg.dcm")
    parsed_pm = hd.pm.ParametricMap.from_dataset(pm)
    parsed_seg = hd.seg.Segmentation.from_dataset(seg)
    for result_ds in (pm, seg):
        assert result_ds.FrameOfReferenceUID == source.FrameOfReferenceUID
        assert result_ds.StudyInstanceUID == source.StudyInstanceUID
        assert referenced_instances(result_ds) == {source.SOPInstanceUID}
        assert (result_ds.Rows, result_ds.Columns, int(result_ds.NumberOfFrames)) == (24, 20, 3)
        assert sorted(source_frames(result_ds)) == [0, 1, 2]
        for item, frame in zip(result_ds.PerFrameFunctionalGroupsSequence, source_frames(result_ds)):
            position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
            assert position == pytest.approx(source_position(source, frame))
        spacing = result_ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        assert [float(v) for v in spacing] == [0.1, 0.1]
    for stored, frame in zip(parsed_pm.pixel_array, source_frames(pm)):
        np.testing.assert_array_equal(stored, heatmaps[frame])  # float32, exact
    for mask, frame in zip(parsed_seg.pixel_array, source_frames(seg)):
        np.testing.assert_array_equal(mask.astype(bool), heatmaps[frame] > 0.5)
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "picard-ad brightness"

    sidecar = json.loads((out / "dbt_dicom.json").read_text())
    assert sidecar["format"] == "picard-ad/heatmap-dicom" and sidecar["missing_outputs"] == {}
    assert sidecar["outputs"] == {"parametric_map": "dbt_pmap.dcm", "segmentation": "dbt_seg.dcm"}
    assert sidecar["source"]["frame_of_reference_uid"] == source.FrameOfReferenceUID
    assert sidecar["files"]["dbt_seg.dcm"]["bytes"] == (out / "dbt_seg.dcm").stat().st_size
    assert not [path for path in out.iterdir() if path.name.startswith(".")]  # no temporaries left

    # A rerun reuses the finished results; another threshold rewrites the Segmentation.
    before = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    again = heatmap(source_path, "--model", model, "--out", out, "--dicom-output", "--segmentation-threshold", 0.5)
    assert again.exit_code == 0 and "skipped 3 finished" in again.output
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == before
    other = heatmap(source_path, "--model", model, "--out", out, "--dicom-output", "--segmentation-threshold", 0.7)
    assert other.exit_code == 0 and "skipped 3 finished" in other.output
    mask = hd.seg.segread(out / "dbt_seg.dcm").get_pixels_by_source_frame(source.SOPInstanceUID, [2])
    np.testing.assert_array_equal(mask[0, ..., 0].astype(bool), heatmaps[1] > 0.7)
    assert json.loads((out / "dbt_dicom.json").read_text())["segmentation_threshold"] == 0.7

    # A changed result file is written again, as other outputs are.
    (out / "dbt_pmap.dcm").write_bytes(b"damaged")
    heatmap(source_path, "--model", model, "--out", out, "--dicom-output", "--segmentation-threshold", 0.7)
    assert hd.pm.ParametricMap.from_dataset(pydicom.dcmread(out / "dbt_pmap.dcm")).NumberOfFrames == 3


def test_without_a_threshold_only_the_parametric_map_is_written(model, tmp_path):
    source_path = pydicom_file("CT_small.dcm")
    out = tmp_path / "out"
    result = heatmap(source_path, "--model", model, "--out", out, "--dicom-output")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == ("picard-ad: warning: no segmentation_threshold given and the heatmap job has no "
                                     "calibrated one: DICOM Segmentations are not written")  # fmt: skip
    assert not (out / "CT_small_seg.dcm").exists()
    pm = pydicom.dcmread(out / "CT_small_pmap.dcm")
    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    assert pm.FrameOfReferenceUID == source.FrameOfReferenceUID and referenced_instances(pm) == {source.SOPInstanceUID}
    position = pm.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    assert [float(v) for v in position] == pytest.approx(source_position(source, 0))
    stored = hd.pm.ParametricMap.from_dataset(pm).pixel_array
    np.testing.assert_array_equal(stored.reshape(128, 128), np.load(out / "CT_small_heatmap.npy"))
    sidecar = json.loads((out / "CT_small_dicom.json").read_text())
    assert list(sidecar["outputs"]) == ["parametric_map"] and "no segmentation_threshold" in \
        sidecar["missing_outputs"]["segmentation"]  # fmt: skip


def test_non_dicom_input_gets_a_warning_and_its_heatmap(model, tmp_path):
    image = tmp_path / "scan.png"
    write_png(image, np.full((40, 32), 0.5), bit_depth=8)
    out = tmp_path / "out"
    result = heatmap(image, "--model", model, "--out", out, "--dicom-output", "--segmentation-threshold", 0.5)
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (f"picard-ad: warning: {image}: not a DICOM input, so no DICOM results "
                                     "(dicom_output); its heatmap is written")  # fmt: skip
    assert sorted(path.name for path in out.iterdir()) == ["scan.json", "scan_heatmap.npy", "scan_overlay.png"]


def test_a_volume_without_geometry_is_refused_in_one_line_and_keeps_its_heatmaps(model, tmp_path):
    volume = tmp_path / "phantom.dcm"
    write_dicom(volume, np.full((2, 24, 20), 0.5))  # multi-frame without Frame of Reference or plane positions
    out = tmp_path / "out"
    result = heatmap(volume, "--model", model, "--out", out, "--dicom-output", "--segmentation-threshold", 0.5)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if "without per-frame geometry" in line]
    assert len(errors) == 1 and str(volume) in errors[0]
    assert (out / "phantom_s0001_heatmap.npy").is_file() and not list(out.glob("*.dcm"))


def test_threshold_without_dicom_output_is_refused(model, tmp_path):
    image = tmp_path / "scan.png"
    write_png(image, np.full((40, 32), 0.5), bit_depth=8)
    result = heatmap(image, "--model", model, "--out", tmp_path / "out", "--segmentation-threshold", 0.5)
    assert result.exit_code == 2
    assert result.stderr.strip() == ("picard-ad: error: options: segmentation_threshold is used only with "
                                     "dicom_output; give both or neither")  # fmt: skip
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {model}\nout: {tmp_path / 'out'}\ndicom_output: true\nsegmentation_threshold: 0.5\n")
    assert heatmap(image, "--config", config).exit_code == 0  # both are YAML keys too


def test_source_without_geometry_gets_the_segmentation_and_one_warning(model, tmp_path):
    source_path = pydicom_file("SC_rgb.dcm")  # secondary capture: no Frame of Reference, no position
    out = tmp_path / "out"
    result = heatmap(source_path, "--model", model, "--out", out, "--dicom-output", "--segmentation-threshold", 0.5)
    assert result.exit_code == 0, result.output
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(f"picard-ad: warning: {source_path}: no Parametric Map: the source has no patient")
    assert not (out / "SC_rgb_pmap.dcm").exists()
    seg = pydicom.dcmread(out / "SC_rgb_seg.dcm")
    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    assert referenced_instances(seg) == {source.SOPInstanceUID}
    np.testing.assert_array_equal(seg.pixel_array.astype(bool), np.load(out / "SC_rgb_heatmap.npy") > 0.5)
    sidecar = json.loads((out / "SC_rgb_dicom.json").read_text())
    assert list(sidecar["outputs"]) == ["segmentation"] and "parametric_map" in sidecar["missing_outputs"]
