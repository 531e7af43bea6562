"""``picard-ad mood`` end to end on tiny NIfTI volumes: the untrained brightness method, and PICARD."""

import json

import nibabel
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from mood_cases import AFFINE, mood, write_case, write_cases
from picard_runs import write_tiny_run

from picard_ad.cli import main
from picard_ad.methods import create_method


@pytest.fixture()
def cases(tmp_path):
    folder = write_cases(tmp_path / "in")
    (folder / "notes.txt").write_text("not an image")
    return folder


def run(inputs, out, *extra):
    return mood(inputs, out, "--method", "brightness", *extra)


def test_pixel_task_writes_same_name_shape_and_affine(cases, tmp_path):
    out = tmp_path / "out"
    result = run(cases, out, "--task", "pixel", "--center", "0.5", "--scale", "0.05")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["abnormal.nii.gz", "flat.nii", "normal.nii.gz"]
    for name, shape in [("abnormal.nii.gz", (28, 24, 5)), ("flat.nii", (20, 16))]:
        image = nibabel.load(out / name)
        scores = np.asarray(image.dataobj)
        assert image.shape == shape and scores.dtype == np.float32
        np.testing.assert_allclose(image.affine, AFFINE)
        assert 0.0 <= scores.min() and scores.max() <= 1.0
    abnormal = np.asarray(nibabel.load(out / "abnormal.nii.gz").dataobj)
    block = np.zeros(abnormal.shape, dtype=bool)
    block[10:16, 8:14, 1:4] = True
    assert abnormal[block].mean() > 5 * abnormal[~block].mean()


def read_scores(folder):
    return {p.name: float(p.read_text()) for p in folder.glob("*.txt")}


def test_sample_task_writes_the_documented_fixed_logistic(cases, tmp_path):
    runs = {}
    for center, scale in [(0.5, 0.05), (0.9, 0.2)]:
        out = tmp_path / f"out_{center}"
        result = run(cases, out, "--task", "sample", "--center", str(center), "--scale", str(scale))
        assert result.exit_code == 0, result.output
        runs[center, scale] = read_scores(out)
    for (center, scale), scores in runs.items():
        assert set(scores) == {"abnormal.nii.gz.txt", "normal.nii.gz.txt", "flat.nii.txt"}
        assert all(0.0 < s < 1.0 for s in scores.values())
    # Inverting each run's logistic gives the same raw slice-max score: the map depends on the case alone.
    first, second = ({name: c + s * np.log(p / (1 - p)) for name, p in scores.items()}
                     for (c, s), scores in runs.items())
    for name in first:
        assert first[name] == pytest.approx(second[name], abs=1e-9)
        assert 0.2 < first[name] <= 1.0  # a quantile of a smoothed image in [0, 1], tissue about 0.25 or more


def test_rerun_skips_finished_outputs(cases, tmp_path):
    out = tmp_path / "out"
    assert run(cases, out, "--task", "sample").exit_code == 0
    (out / "normal.nii.gz.txt").write_text("0.25\n")  # a finished output is not recomputed
    (out / "flat.nii.txt").unlink()
    result = run(cases, out, "--task", "sample")
    assert result.exit_code == 0, result.output
    assert "wrote 1 sample output(s), skipped 2 finished" in result.output
    assert (out / "normal.nii.gz.txt").read_text() == "0.25\n"
    assert (out / "flat.nii.txt").is_file()


def test_corrupt_input_is_named_and_the_others_are_written(cases, tmp_path):
    (cases / "broken.nii.gz").write_bytes(b"\x1f\x8b" + b"not a nifti" * 40)
    out = tmp_path / "out"
    result = run(cases, out, "--task", "pixel")
    assert result.exit_code == 2
    assert "broken.nii.gz" in result.output and "1 of 4 input(s) failed" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["abnormal.nii.gz", "flat.nii", "normal.nii.gz"]


def test_options_are_checked(cases, tmp_path):
    result = mood(cases, tmp_path / "out", "--method", "picard")
    assert result.exit_code == 2 and "needs training: fit it" in result.output
    result = mood(cases, tmp_path / "out")
    assert result.exit_code == 2 and "exactly one of --model RUN_DIR and --method NAME" in result.output
    config = tmp_path / "mood.yaml"
    config.write_text("task: sample\nsacle: 0.1\n")
    result = run(cases, tmp_path / "out", "--config", str(config))
    assert result.exit_code == 2 and "unknown key 'sacle'" in result.output
    for bad, message in ((["--scale", "0"], "scale must be > 0.0"), (["--center", "inf"], "not a finite number"),
                         (["--axis", "3"], "axis must be in [0, 2]")):  # fmt: skip
        result = run(cases, tmp_path / "out", *bad)
        assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_model_scores_with_picard(tmp_path):
    run_dir = write_tiny_run(tmp_path / "run")
    folder = tmp_path / "in"
    folder.mkdir()
    write_case(folder / "case.nii.gz", bright_block=True, shape=(96, 96, 2))
    threads = torch.get_num_threads()
    try:
        result = mood(folder, tmp_path / "out", "--model", run_dir, "--config", _picard_config(tmp_path))
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    scores = np.asarray(nibabel.load(tmp_path / "out" / "case.nii.gz").dataobj)
    assert scores.shape == (96, 96, 2) and 0.0 <= scores.min() and scores.max() <= 1.0
    assert np.unique(scores).size > 100  # PICARD's heatmap, not a constant


def _picard_config(folder):
    path = folder / "picard.yaml"
    path.write_text("n_completions: 2\nstride: 32\nthreads: 1\ndevice: cpu\ncenter: 16.0\nscale: 1.0\n")
    return path


def test_a_fitted_run_of_any_method_is_given_by_model(cases, tmp_path):
    saved = create_method("brightness", settings={"sigma": 1.0}).save(tmp_path / "m")
    by_name, by_folder = tmp_path / "by_name", tmp_path / "by_folder"
    assert run(cases, by_name).exit_code == 0  # run() passes --method brightness (sigma 4)
    result = mood(cases, by_folder, "--model", saved)
    assert result.exit_code == 0, result.output
    sharp = np.asarray(nibabel.load(by_folder / "abnormal.nii.gz").dataobj)
    smooth = np.asarray(nibabel.load(by_name / "abnormal.nii.gz").dataobj)
    assert sharp.shape == smooth.shape and not np.array_equal(sharp, smooth)


@pytest.fixture()
def normals(tmp_path):
    folder = tmp_path / "normals"
    folder.mkdir()
    for index in range(3):
        write_case(folder / f"normal_{index}{'x' * index}.nii.gz", bright_block=False)  # names seed the noise
    return folder


def test_calibrate_on_normals_then_reuse_the_file(cases, normals, tmp_path):
    from picard_ad.jobs.mood import (
        MoodSettings,
        pixel_scores,
        read_calibration,
        score_volume,
    )

    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["mood", str(cases), str(out), "--method", "brightness", "--calibrate",
                                       str(normals)])
    assert result.exit_code == 0, result.output
    calibration = read_calibration(out / "calibration.json")
    assert calibration.task == "pixel" and len(calibration.normal_volumes) == 3
    assert f"center {calibration.center:.6g}" in result.output
    raw = score_volume(cases / "abnormal.nii.gz", create_method("brightness").score_map).scores
    scores = np.asarray(nibabel.load(out / "abnormal.nii.gz").dataobj)
    np.testing.assert_array_equal(scores, pixel_scores(raw, MoodSettings().calibrated(calibration)))
    assert 0.0 <= scores.min() and scores.max() <= 1.0
    order = np.argsort(raw.ravel(), kind="stable")
    assert np.all(np.diff(scores.ravel()[order].astype(np.float64)) >= 0)

    again = tmp_path / "again"
    result = run(cases, again, "--calibration", str(out / "calibration.json"))
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.asarray(nibabel.load(again / "abnormal.nii.gz").dataobj), scores)
    assert read_calibration(again / "calibration.json") == calibration

    refused = tmp_path / "refused"
    for extra in (["--task", "sample"], ["--axis", "0"]):
        result = CliRunner().invoke(main, ["mood", str(cases), str(refused), "--method", "brightness",
                                           "--calibration", str(out / "calibration.json"), *extra])
        assert result.exit_code == 2 and "calibration made " in result.output
    assert not refused.exists()


def test_explicit_center_and_scale_override_the_calibration(cases, normals, tmp_path):
    calibrated, explicit = tmp_path / "calibrated", tmp_path / "explicit"
    assert run(cases, calibrated, "--task", "sample", "--calibrate", str(normals)).exit_code == 0
    result = run(cases, explicit, "--task", "sample", "--calibrate", str(normals), "--center", "0.5", "--scale", "0.05")
    assert result.exit_code == 0, result.output
    assert "center 0.5, scale 0.05" in result.output
    plain = tmp_path / "plain"
    assert run(cases, plain, "--task", "sample", "--center", "0.5", "--scale", "0.05").exit_code == 0
    assert read_scores(plain) == read_scores(explicit) != read_scores(calibrated)
    assert (explicit / "calibration.json").is_file()  # still recorded, for a later run without the override


def test_unusable_normals_stop_the_run_before_any_output(cases, normals, tmp_path):

    (normals / "broken.nii.gz").write_bytes(b"\x1f\x8b" + b"not a nifti" * 40)
    (tmp_path / "empty").mkdir()
    for folder, message in [(normals, "broken.nii.gz"), (tmp_path / "empty", "no .nii.gz or .nii"),
                            (tmp_path / "missing", "not found")]:
        out = tmp_path / f"out_{folder.name}"
        result = CliRunner().invoke(main, ["mood", str(cases), str(out), "--method", "brightness",
                                           "--calibrate", str(folder)])
        assert result.exit_code == 2 and message in result.output
        assert not out.exists()
    result = run(cases, tmp_path / "out", "--calibrate", str(normals), "--calibration", str(tmp_path / "c.json"))
    assert result.exit_code == 2 and "at most one of calibrate" in result.output


def test_help_lists_the_calibration_options_and_the_methods_settings():
    result = mood("--help")
    assert result.exit_code == 0
    for option in ("--calibrate NORMAL_DIR", "--calibration FILE", "--center", "--scale"):
        assert option in result.output
    assert "--sigma NUMBER" in mood("--method", "brightness", "--help").output


def test_a_calibration_for_another_model_or_setting_is_refused(tmp_path):
    run_dir = write_tiny_run(tmp_path / "run")
    folder = tmp_path / "in"
    folder.mkdir()
    write_case(folder / "case.nii.gz", bright_block=True, shape=(96, 96, 2))
    threads = torch.get_num_threads()
    try:
        first = mood(folder, tmp_path / "a", "--model", run_dir, "--config", _picard_config(tmp_path),
                     "--calibrate", folder)  # fmt: skip
        assert first.exit_code == 0, first.output
        calibration = tmp_path / "a" / "calibration.json"
        same = mood(folder, tmp_path / "b", "--model", run_dir, "--config", _picard_config(tmp_path),
                    "--calibration", calibration, "--no-bf16")  # an execution setting: same scores within rounding
        assert same.exit_code == 0, same.output
        other_m = mood(folder, tmp_path / "c", "--model", run_dir, "--config", _picard_config(tmp_path),
                       "--calibration", calibration, "--M", 3)  # fmt: skip
        assert other_m.exit_code == 2 and "made for another method or model" in other_m.output
        other_run = write_tiny_run(tmp_path / "other", seed=1)
        other_weights = mood(folder, tmp_path / "d", "--model", other_run, "--config", _picard_config(tmp_path),
                             "--calibration", calibration)  # fmt: skip
        assert other_weights.exit_code == 2 and "state_sha256" in other_weights.output
    finally:
        torch.set_num_threads(threads)
    recorded = json.loads(calibration.read_text())["method"]
    assert recorded["name"] == "picard" and len(recorded["state_sha256"]) == 64
    assert "device" not in recorded["settings"] and recorded["settings"]["n_completions"] == 2
