"""MOOD scoring: the fixed squashing, the float16 spreading of voxel scores, and volumes scored slice by slice."""

import nibabel
import numpy as np
import pytest

from picard_ad.errors import ConfigError
from picard_ad.jobs.mood import (
    FLOAT16_ONE,
    MoodSettings,
    float16_floor_codes,
    output_path,
    pixel_scores,
    run_case,
    score_volume,
    squash,
)

SETTINGS = MoodSettings(center=1.0, scale=0.1)


def top_percent(raw: np.ndarray) -> np.ndarray:
    flat = raw.ravel()
    return np.argsort(flat, kind="stable")[-int(np.ceil(0.01 * flat.size)):]


def test_squash_is_the_fixed_logistic():
    values = squash(np.array([1.0, 1.1, 0.0, 50.0, -50.0]), SETTINGS)
    np.testing.assert_allclose(values, [0.5, 1 / (1 + np.exp(-1)), 1 / (1 + np.exp(10)), 1.0, 0.0], atol=1e-15)


def test_float16_floor_codes_never_round_up():
    values = np.array([0.0, 1e-9, 0.3, 0.99999, 1.0, 1.5])
    floors = float16_floor_codes(values).astype(np.uint16).view(np.float16).astype(np.float64)
    assert np.all(floors <= np.clip(values, 0, 1))
    assert floors[3] == np.float16(1 - 2**-11) and floors[4] == 1.0 and floors[5] == 1.0
    assert float16_floor_codes(np.array([1.0]))[0] == FLOAT16_ONE


def test_top_percent_stays_distinct_and_ordered_in_float16():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.0, 3.0, size=(40, 40, 20))  # above ~1.8 the logistic crowds into float16's last steps
    naive = squash(raw, SETTINGS).astype(np.float16)
    top = top_percent(raw)
    assert np.unique(naive.ravel()[top]).size < top.size / 10  # without spreading the top voxels tie

    scores = pixel_scores(raw, SETTINGS)
    assert scores.dtype == np.float32 and scores.shape == raw.shape
    assert 0.0 <= scores.min() and scores.max() <= 1.0
    as_read = scores.astype(np.float16)
    np.testing.assert_array_equal(as_read.astype(np.float32), scores)  # exact float16 values
    top_read = as_read.ravel()[top]
    assert np.unique(top_read).size == np.unique(raw.ravel()[top]).size == top.size
    assert np.all(np.diff(top_read.astype(np.float64)) > 0)  # top is sorted by raw, ascending


def test_mapping_is_monotone_and_keeps_ties():
    rng = np.random.default_rng(1)
    raw = np.round(rng.normal(1.0, 0.5, size=(30, 30, 10)), 2)  # many exact ties
    scores = pixel_scores(raw, SETTINGS).ravel()
    order = np.argsort(raw.ravel(), kind="stable")
    assert np.all(np.diff(scores[order].astype(np.float64)) >= 0)
    for value in np.unique(raw)[-5:]:
        assert np.unique(scores[raw.ravel() == value]).size == 1
    np.testing.assert_array_equal(pixel_scores(raw, SETTINGS).ravel(), scores)  # deterministic


def test_uncrowded_scores_keep_the_fixed_calibration_across_volumes():
    rng = np.random.default_rng(2)
    low = rng.choice(np.linspace(0.0, 0.5, 200), size=(20, 20, 10))  # below center, float16 separates the levels
    other = low.copy()
    other[:2] = 0.3  # a different volume sharing most raw values
    expected = float16_floor_codes(squash(low, SETTINGS)).astype(np.uint16).view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(pixel_scores(low, SETTINGS), expected)
    np.testing.assert_array_equal(pixel_scores(other, SETTINGS)[2:], expected[2:])


def test_crowding_compresses_the_rest_without_collapsing_it():
    raw = np.linspace(0.0, 3.0, 20000)  # 59 % of the voxels squash into float16's last 200 steps below 1
    scores = pixel_scores(raw, SETTINGS).astype(np.float16)
    assert np.all(np.diff(scores.astype(np.float64)) >= 0)
    assert np.unique(scores[-200:]).size == 200
    naive = np.unique(float16_floor_codes(squash(raw, SETTINGS))).size
    assert np.unique(scores).size > 0.95 * naive  # the spreading merged few of the float16 levels g used


def test_saturated_and_vanishing_scores_are_still_spread():
    for raw in (np.linspace(100.0, 101.0, 2000), np.linspace(-100.0, -99.0, 2000)):  # g == 1 or 0 throughout
        scores = pixel_scores(raw, SETTINGS).astype(np.float16)
        assert np.all(np.diff(scores[-20:].astype(np.float64)) > 0)
        assert np.all(np.diff(scores.astype(np.float64)) >= 0)


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="scale"):
        MoodSettings(scale=0.0)
    with pytest.raises(ConfigError, match="task"):
        MoodSettings(task="voxel")


def write_volume(path, shape=(24, 20, 6)):
    data = np.zeros(shape, dtype=np.float32)
    data[4:20, 3:17] = 100.0
    data[10:14, 8:12, 2:4] = 300.0  # a bright block: the brightness map peaks there
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 3.0]
    nibabel.save(nibabel.Nifti1Image(data, affine), path)
    return affine


def brightness(image):
    return image.astype(np.float32)


@pytest.mark.parametrize("axis", [0, 2])
def test_score_volume_keeps_the_stored_geometry(tmp_path, axis):
    path = tmp_path / "case.nii.gz"
    write_volume(path)
    scored = score_volume(path, brightness, axis=axis)
    assert scored.scores.shape == scored.tissue.shape == (24, 20, 6)
    stored = np.asarray(nibabel.load(path).dataobj)
    np.testing.assert_allclose(scored.scores, np.clip(stored / np.percentile(stored, 99.9), 0, 1), atol=1e-6)
    np.testing.assert_array_equal(scored.tissue, stored > 0)  # the bright rectangle is the tissue, background 0
    assert scored.sample == pytest.approx(1.0)  # 99th percentile of the slices through the block is its value


def test_run_case_writes_once(tmp_path):
    path = tmp_path / "in" / "case.nii"
    path.parent.mkdir()
    affine = write_volume(path, shape=(16, 12, 4, 1))
    out = tmp_path / "out"
    assert run_case(path, out, brightness, SETTINGS)
    written = nibabel.load(out / "case.nii")
    assert written.shape == (16, 12, 4, 1) and written.get_data_dtype() == np.float32
    np.testing.assert_allclose(written.affine, affine)
    assert output_path(path, out, "sample").name == "case.nii.txt"
    assert not run_case(path, out, lambda image: pytest.fail("a finished case was scored again"), SETTINGS)
