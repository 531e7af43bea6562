"""The calibrated scores: context features, the binned z-score table, and PICARD scoring with it."""

import json

import numpy as np
import pytest
from picard_runs import FAST, PaddedPhantom, write_tiny_run

from picard_ad.data.phantoms import PhantomConfig, generate_phantom
from picard_ad.errors import ConfigError
from picard_ad.io.writers import write_png
from picard_ad.localize import extract_windows, scored_windows
from picard_ad.methods import create_method, load_method
from picard_ad.methods.picard.calibration import CALIBRATION_FILE, ContextCalibration, window_context

DENSE = {**FAST, "stride": 16}


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs torch on one thread (the shared fixture in tests/conftest.py)."""


def test_window_context_is_mean_and_std_outside_the_hole():
    window = np.zeros((1, 6, 6))
    window[0, :, :3] = 1.0  # left half bright
    window[0, 2:4, 2:4] = 7.0  # the 2 px hole, left out
    # 32 context pixels: 16 bright, 16 dark
    assert window_context(window, 2) == pytest.approx(np.array([[0.5, 0.5]]))
    assert window_context(np.zeros((0, 6, 6)), 2).shape == (0, 2)


def test_calibration_is_a_z_score_within_context_bins():
    rng = np.random.default_rng(0)
    # two kinds of normal windows: dark and flat (scores ~ 1 +- 0.3), bright and textured (scores ~ 5 +- 1)
    dark = np.column_stack([rng.uniform(0.1, 0.2, 200), rng.uniform(0.01, 0.02, 200)])
    bright = np.column_stack([rng.uniform(0.7, 0.8, 200), rng.uniform(0.2, 0.3, 200)])
    scores = np.concatenate([rng.normal(1, 0.3, 200), rng.normal(5, 1, 200)])
    calibration = ContextCalibration.fit(np.concatenate([dark, bright]), scores, bins=2, min_count=20)
    # each group fills one diagonal cell; the off-diagonal cells are empty and take their row's statistics
    assert calibration.count.tolist() == [[200, 0], [0, 200]]
    assert calibration.mean[0, 0] == pytest.approx(scores[:200].mean())
    assert calibration.std[1, 1] == pytest.approx(scores[200:].std())
    assert calibration.mean[0, 1] == calibration.mean[0, 0] and calibration.std[1, 0] == calibration.std[1, 1]
    # a score of 2 is 3 sigma above dark-flat normal tissue, but below bright-textured normal tissue
    z = calibration.z_scores(np.array([[0.15, 0.015], [0.75, 0.25]]), np.array([2.0, 2.0]))
    assert z[0] == pytest.approx((2.0 - scores[:200].mean()) / scores[:200].std())
    assert z[1] == pytest.approx((2.0 - scores[200:].mean()) / scores[200:].std())
    assert z[0] > 2.5 and z[1] < -2


def test_too_few_windows_use_fewer_bins_and_a_floor_on_the_spread():
    context = np.column_stack([np.linspace(0, 1, 30), np.linspace(0, 1, 30)])
    calibration = ContextCalibration.fit(context, np.ones(30), bins=4, min_count=20)
    assert calibration.mean.shape == (1, 1)  # 30 windows hold one cell of >= 20
    assert calibration.std[0, 0] > 0  # identical scores: the floor keeps z finite
    assert np.isfinite(calibration.z_scores(context[:2], np.array([1.0, 2.0]))).all()
    with pytest.raises(ConfigError, match="at least 2 normal windows"):
        ContextCalibration.fit(context[:1], np.ones(1))


def test_calibration_record_round_trip_and_malformed_records():
    rng = np.random.default_rng(1)
    calibration = ContextCalibration.fit(rng.uniform(size=(400, 2)), rng.normal(size=400), bins=3)
    again = ContextCalibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert again.edges == calibration.edges and np.array_equal(again.mean, calibration.mean)
    assert np.array_equal(again.std, calibration.std) and np.array_equal(again.count, calibration.count)
    broken = {**calibration.to_dict(), "std": [[0.0] * 3] * 3}
    with pytest.raises(ConfigError, match="cal.json: not a context calibration"):
        ContextCalibration.from_dict(broken, "cal.json")


def normal_images(n: int) -> list[np.ndarray]:
    config = PhantomConfig(size=(160, 128), pixel_spacing_mm=0.5, mass_diameter_mm=(5.0, 9.0),
                           calcification_cluster_mm=(4.0, 6.0), side="L")
    return [generate_phantom(config, seed=100 + i, n_lesions=0).image for i in range(n)]


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    run_dir = write_tiny_run(tmp_path_factory.mktemp("calibrated_run"))
    picard = load_method(run_dir, **DENSE)
    files = []
    for index, image in enumerate(normal_images(3)):
        files.append((run_dir / f"normal_{index}.png", 0))
        write_png(files[-1][0], image, bit_depth=16)
    picard.calibration = picard.calibrate(files)
    picard.save(run_dir)
    return run_dir


def test_a_calibrated_heatmap_is_the_raw_window_scores_z_scored_by_their_context(calibrated_run):
    picard = load_method(calibrated_run, **DENSE)
    assert (calibrated_run / CALIBRATION_FILE).is_file() and picard.calibration.windows > 40
    image = PaddedPhantom().image
    heatmaps = picard.heatmaps(image, ("mcd-image", "calibrated-mcd-image", "calibrated-mean-feature", "mean-feature"))
    grid, keep = scored_windows(image, 64, 32, 16, picard.settings.tissue_threshold)
    context = window_context(extract_windows(image, grid, np.flatnonzero(keep.ravel())), 32)
    tables = picard.calibration.tables
    for raw in ("mcd-image", "mean-feature"):
        expected = tables[raw].z_scores(context, heatmaps[raw].window_scores[keep])
        assert heatmaps[f"calibrated-{raw}"].window_scores[keep] == pytest.approx(expected, rel=1e-9)
    assert not np.allclose(heatmaps["calibrated-mcd-image"].array, heatmaps["mcd-image"].array)


def test_the_calibration_follows_the_settings_and_travels_in_the_identity(calibrated_run):
    fit_time = load_method(calibrated_run, **DENSE)
    identity = fit_time.identity()
    other_m = load_method(calibrated_run, **{**DENSE, "n_completions": 3})
    refitted = other_m.score_calibrations()  # refitted in memory on the same normal windows for M = 3
    assert refitted.key["n_completions"] == 3 and fit_time.calibration.key["n_completions"] == 2
    assert refitted.windows == fit_time.calibration.windows
    assert refitted.tables["mean-image"].mean.tolist() != fit_time.calibration.tables["mean-image"].mean.tolist()
    assert CALIBRATION_FILE in [path.name for path in fit_time.state_files()]
    assert load_method(calibrated_run, **DENSE).identity() == identity  # nothing was written


def test_calibrated_scores_without_a_usable_calibration_say_why(tmp_path):
    run_dir = write_tiny_run(tmp_path / "run")
    (run_dir / CALIBRATION_FILE).unlink()  # as a run fitted before calibrated scores existed
    picard = load_method(run_dir, **FAST)
    with pytest.raises(ConfigError, match="need a calibration on normal images.*--score mcd-image"):
        picard.heatmap(PaddedPhantom().image, "calibrated-mcd-image")
    picard.calibration = picard.calibrate(normal_images(1))  # arrays: cannot be read again for other settings
    picard.save(tmp_path / "run")
    other_m = load_method(tmp_path / "run", **{**FAST, "n_completions": 3})
    with pytest.raises(ConfigError, match="cannot be refitted for these: its normal in-memory image 0 is not"):
        other_m.heatmap(PaddedPhantom().image, "calibrated-mcd-image")


def test_fitting_calibrates_on_the_runs_own_normal_images_only(tmp_path):
    images = normal_images(3)
    settings = {"bf16": False, "channels_last": False, "device": "cpu", "stride": 8, "n_completions": 2,
                "calibration_images": 2}  # fmt: skip
    picard = create_method("picard", preset="tiny", train={"device": "cpu", "num_workers": 0}, settings=settings)
    picard.fit(images, run_dir=tmp_path / "run", progress=False)
    saved = load_method(tmp_path / "run")
    files = sorted((tmp_path / "run" / "normal_images").glob("*.png"))
    assert len(files) == 3  # the three normal images, written by the fit
    # two of them, evenly spaced (the first and the last), and nothing else
    assert saved.calibration.images == (f"{files[0]}#0", f"{files[2]}#0")
    assert saved.calibration.key == saved.calibration_key() and saved.calibration.windows > 20
    assert saved.heatmap(images[0], "calibrated-mcd-image").array.shape == images[0].shape
