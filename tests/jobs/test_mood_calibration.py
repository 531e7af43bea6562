"""MOOD calibration: center and scale of the squashing from normal volumes, their record, reuse and refusal."""

import json

import nibabel
import numpy as np
import pytest

from picard_ad.data.tissue import tissue_mask
from picard_ad.errors import ConfigError, CorruptFileError, InputError
from picard_ad.io import iter_slices
from picard_ad.jobs import mood
from picard_ad.jobs.mood import (
    CALIBRATION_E_FOLDS,
    CALIBRATION_FILE,
    MoodSettings,
    calibrate,
    check_calibration,
    codes_to_scores,
    float16_floor_codes,
    pixel_scores,
    prepare_calibration,
    read_calibration,
    score_volume,
    squash,
    write_calibration,
)
from picard_ad.methods import create_method

BRIGHTNESS = create_method("brightness")
IDENTITY = {"name": "brightness", "config": {"sigma": 4.0}}


def write_normal(path, seed, shape=(24, 20, 5)):
    """A volume with a noisy rectangle of tissue on a zero background; the tissue differs from seed to seed."""
    rng = np.random.default_rng(seed)
    data = np.zeros(shape, dtype=np.int16)
    data[3 + seed % 3:-3, 2:-2 - seed % 2] = rng.integers(60, 140, size=data[3 + seed % 3:-3, 2:-2 - seed % 2].shape)
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), path)


@pytest.fixture()
def normals(tmp_path):
    folder = tmp_path / "normals"
    folder.mkdir()
    for seed in range(3):
        write_normal(folder / f"normal_{seed}.nii.gz", seed)
    (folder / "README.txt").write_text("not a volume")
    return folder


def direct_scores(folder, axis=2):
    """Tissue-voxel and slice-max raw scores of every volume, computed slice by slice without the mood job."""
    voxels, samples = [], []
    for path in sorted(folder.glob("*.nii.gz")):
        slice_scores = []
        for image in iter_slices(path, axis=axis):
            scores = BRIGHTNESS.score_map(image.pixels)
            tissue = tissue_mask(image.pixels)
            voxels.append(scores[tissue])
            slice_scores.append(np.quantile(scores[tissue] if tissue.any() else scores, 0.99))
        samples.append(max(slice_scores))
    return np.concatenate(voxels).astype(np.float64), np.asarray(samples, dtype=np.float64)


@pytest.mark.parametrize("task", ["pixel", "sample"])
def test_calibration_is_the_quantiles_of_normal_scores(normals, task):
    voxels, samples = direct_scores(normals)
    expected = voxels if task == "pixel" else samples
    low, high = np.quantile(expected, [0.5, 0.999])
    calibration = calibrate(normals, BRIGHTNESS.score_map, task, 2, IDENTITY, progress=False)
    assert calibration.quantiles == {"0.5": low, "0.999": high}
    assert calibration.center == high and calibration.scale == (high - low) / CALIBRATION_E_FOLDS
    assert calibration.n_voxels == voxels.size and calibration.n_scores == expected.size
    assert calibration.normal_volumes == ("normal_0.nii.gz", "normal_1.nii.gz", "normal_2.nii.gz")
    assert calibration.normal_dir == str(normals.resolve()) and calibration.method == IDENTITY


def test_many_voxels_are_sampled_uniformly_and_repeatably(normals, monkeypatch):
    monkeypatch.setattr(mood, "CALIBRATION_SAMPLE_SIZE", 600)
    voxels, _ = direct_scores(normals)
    assert voxels.size > 3 * 600
    first = calibrate(normals, BRIGHTNESS.score_map, "pixel", 2, IDENTITY, progress=False)
    assert first.n_scores == 600 and first.n_voxels == voxels.size
    exact = np.quantile(voxels, 0.5)
    assert abs(first.quantiles["0.5"] - exact) < 0.05 * np.ptp(voxels)  # a fair sample, not one volume's voxels
    assert calibrate(normals, BRIGHTNESS.score_map, "pixel", 2, IDENTITY, progress=False) == first


def test_calibrated_scores_are_in_unit_interval_and_monotone(normals, tmp_path):
    calibration = calibrate(normals, BRIGHTNESS.score_map, "pixel", 2, IDENTITY, progress=False)
    settings = MoodSettings().calibrated(calibration)
    assert settings.squashing == (calibration.center, calibration.scale)
    case = tmp_path / "case.nii.gz"
    write_normal(case, seed=7)
    raw = score_volume(case, BRIGHTNESS.score_map).scores
    scores = pixel_scores(raw, settings).ravel()
    assert 0.0 <= scores.min() and scores.max() <= 1.0
    order = np.argsort(raw.ravel(), kind="stable")
    assert np.all(np.diff(scores[order].astype(np.float64)) >= 0)
    # The calibrated g, rounded down to float16, for every voxel not tied with another raw value.
    values, voxel_value = np.unique(raw.ravel(), return_inverse=True)
    codes = float16_floor_codes(squash(values, settings))
    used, n_values = np.unique(codes, return_counts=True)
    untied = ~np.isin(codes, used[n_values > 1])[voxel_value]
    assert untied.mean() > 0.25  # background and crowded values tie, the rest do not
    np.testing.assert_array_equal(scores[untied], codes_to_scores(codes)[voxel_value][untied])
    assert squash(calibration.center, settings) == 0.5
    assert squash(calibration.quantiles["0.5"], settings) == pytest.approx(1 / (1 + np.exp(CALIBRATION_E_FOLDS)))
    explicit = MoodSettings(center=2.0).calibrated(calibration)  # a given value wins over the calibration
    assert explicit.squashing == (2.0, calibration.scale)


def test_record_round_trips_and_bad_files_are_named(normals, tmp_path):
    calibration = calibrate(normals, BRIGHTNESS.score_map, "sample", 2, IDENTITY, progress=False)
    path = tmp_path / "out" / CALIBRATION_FILE
    write_calibration(path, calibration)
    assert read_calibration(path) == calibration
    record = json.loads(path.read_text())
    assert record["n_volumes"] == 3 and record["format"] == "picard-ad/mood-calibration"
    path.write_text("{not json")
    with pytest.raises(CorruptFileError, match=CALIBRATION_FILE):
        read_calibration(path)
    path.write_text(json.dumps({**record, "scale": -1.0}))
    with pytest.raises(CorruptFileError, match="scale positive"):
        read_calibration(path)
    with pytest.raises(InputError, match="not found"):
        read_calibration(tmp_path / "missing.json")


def test_calibration_for_another_task_axis_or_method_is_refused(normals, tmp_path):
    calibration = calibrate(normals, BRIGHTNESS.score_map, "pixel", 2, IDENTITY, progress=False)
    where = tmp_path / CALIBRATION_FILE
    check_calibration(calibration, "pixel", 2, {"config": {"sigma": 4.0}, "name": "brightness"}, where)
    with pytest.raises(InputError, match="made for the pixel task, not the sample task"):
        check_calibration(calibration, "sample", 2, IDENTITY, where)
    with pytest.raises(InputError, match="axis 2, not axis 0"):
        check_calibration(calibration, "pixel", 0, IDENTITY, where)
    with pytest.raises(InputError, match=r'another method or model: \{"config": \{"sigma": 4.0\}\}'):
        check_calibration(calibration, "pixel", 2, {"name": "brightness", "config": {"sigma": 1.0}}, where)


def test_a_rerun_reuses_the_record_made_from_the_same_normals(normals, tmp_path):
    out = tmp_path / "out"
    settings = MoodSettings(calibrate=normals)
    first = prepare_calibration(settings, out, BRIGHTNESS.score_map, IDENTITY, progress=False)
    assert read_calibration(out / CALIBRATION_FILE) == first

    def unexpected(image, origin=None):
        pytest.fail("the normal volumes were scored again")

    assert prepare_calibration(settings, out, unexpected, IDENTITY, progress=False) == first
    write_normal(normals / "normal_3.nii.gz", seed=3)
    with pytest.raises(InputError, match="other normal volumes"):
        prepare_calibration(settings, out, BRIGHTNESS.score_map, IDENTITY, progress=False)
    reused = MoodSettings(calibration=out / CALIBRATION_FILE)
    assert prepare_calibration(reused, tmp_path / "elsewhere", unexpected, IDENTITY, progress=False) == first
    assert read_calibration(tmp_path / "elsewhere" / CALIBRATION_FILE) == first
    assert prepare_calibration(MoodSettings(), tmp_path / "none", unexpected, IDENTITY) is None


def test_unusable_normals_are_errors_naming_them(normals, tmp_path):
    (tmp_path / "empty").mkdir()
    for folder, message in [(tmp_path / "missing", "not found"), (tmp_path / "empty", "no .nii.gz or .nii")]:
        with pytest.raises(InputError, match=message):
            calibrate(folder, BRIGHTNESS.score_map, "pixel", 2, IDENTITY, progress=False)
    with pytest.raises(InputError, match="no spread"):
        calibrate(normals, lambda image, origin: np.ones_like(image), "pixel", 2, IDENTITY, progress=False)
    (normals / "normal_9.nii.gz").write_bytes(b"\x1f\x8b" + b"not a nifti" * 40)
    with pytest.raises(InputError, match="normal_9.nii.gz"):
        calibrate(normals, BRIGHTNESS.score_map, "pixel", 2, IDENTITY, progress=False)
    with pytest.raises(ConfigError, match="at most one of calibrate"):
        MoodSettings(calibrate=normals, calibration=tmp_path / CALIBRATION_FILE)
