"""CutPaste end to end: fit and heatmap through the command line, Gaussians per location, a planted anomaly, state
round trips and exact resume."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from method_checks import assert_resume_is_exact, picard_ad, write_phantom_pngs
from safetensors.numpy import load_file

from picard_ad.data.datasets import phantom_dataset
from picard_ad.data.phantoms import PhantomConfig
from picard_ad.errors import ConfigError, InputError
from picard_ad.methods import create_method, load_method
from picard_ad.methods.cutpaste import PRESETS, CutPaste, CutPasteSettings, CutPasteTraining, seconds_per_window
from picard_ad.methods.cutpaste.embedding import WindowEmbedder
from picard_ad.methods.cutpaste.training import build_networks
from picard_ad.training import Trainer

PHANTOM = PhantomConfig(size=(128, 128), pixel_spacing_mm=1.0)


@pytest.fixture(scope="module")
def phantoms():
    samples = phantom_dataset(3, 2, PHANTOM, seed=11)
    return [s for s in samples if s.is_normal], [s.load() for s in samples if not s.is_normal]


@pytest.fixture(scope="module")
def data(tmp_path_factory, phantoms):
    """The phantoms as PNGs: normal/, abnormal/ and masks/."""
    root = tmp_path_factory.mktemp("cutpaste")
    return write_phantom_pngs(root, *phantoms)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A tiny CutPaste fitted through ``picard-ad fit``, its Gaussians on windows at stride 16."""
    folder = tmp_path_factory.mktemp("run") / "run"
    config = data / "fit.yaml"
    config.write_text("settings:\n  stride: 16\n")
    picard_ad("fit", "--method", "cutpaste", "--preset", "tiny", "--data", data / "normal", "--out", folder,
              "--config", config, "--quiet")  # fmt: skip
    return folder


def test_fit_and_heatmap_through_the_command_line(data, run, tmp_path):
    assert "cutpaste " in picard_ad("methods") and "mahalanobis*" in picard_ad("methods")
    assert "--optimizer [sgd|adam]" in picard_ad("fit", "--method", "cutpaste", "--help")
    expected = ("method.json", "gde.json", "gde.safetensors", "last/encoder.safetensors", "last/head.safetensors",
                "best/encoder.safetensors", "loss_curve.png", "validation.csv", "samples/step_00000004.png")
    for path in expected:
        assert (run / path).is_file(), path
    record = json.loads((run / "method.json").read_text())
    assert record["name"] == "cutpaste" and record["train"]["steps"] == 4 and record["settings"]["stride"] == 16
    fitted = json.loads((run / "gde.json").read_text())
    assert (fitted["patch_size"], fitted["stride"], fitted["embedding_dim"], fitted["encoder_step"]) == (32, 16, 32, 4)
    assert "--gde [shared|per-location]" in picard_ad("heatmap", "--model", run, "--help")

    out = tmp_path / "maps"
    picard_ad("heatmap", data / "abnormal", "--model", run, "--out", out, "--annotations", data / "masks", "--quiet")
    sidecar = json.loads((out / "abnormal_0000.json").read_text())
    assert sidecar["method"] == "cutpaste" and sidecar["score"] == "mahalanobis"
    assert len(sidecar["key"]["method"]["state_sha256"]) == 64
    window = sidecar["slices"][0]["heatmap"]
    assert (window["patch_size"], window["mask_size"], window["stride"]) == (32, 16, 16)
    heatmap = np.load(out / "abnormal_0000_heatmap.npy")
    assert heatmap.shape == (128, 128) and heatmap.dtype == np.float32 and np.isfinite(heatmap).all()
    assert "ResNet-18 layout" in picard_ad("describe", run)


def test_a_planted_bright_disc_scores_higher_than_the_tissue_around_it(run, phantoms):
    method = load_method(run, stride=8)
    image = phantoms[0][0].load_image().copy()
    rows, cols = np.mgrid[:128, :128]
    tissue = image > 0.05
    centre_row, centre_col = (int(np.median(axis)) for axis in np.nonzero(tissue))
    disc = (rows - centre_row) ** 2 + (cols - centre_col) ** 2 <= 8**2
    image[disc] = 1.0
    scores = method.score_map(image)
    outside = tissue & ~((rows - centre_row) ** 2 + (cols - centre_col) ** 2 <= 40**2)
    assert scores[disc].mean() > np.quantile(scores[outside], 0.9)


def test_per_location_gaussians_fit_one_grid_and_refuse_another(phantoms, tmp_path):
    normals, abnormals = phantoms
    method = create_method("cutpaste", preset="tiny", settings={"gde": "per-location", "stride": 16})
    method.fit(normals, run_dir=tmp_path / "run")
    located = method.densities["per-location"]
    assert located.n_locations == 7 * 7 and located.count.max() <= len(normals)
    assert method.geometry["grid_shape"] == [7, 7] and method.geometry["image_shape"] == [128, 128]
    heatmap = method.heatmap(abnormals[0].image)
    assert np.isfinite(heatmap.array).all() and heatmap.array.std() > 0
    shared = load_method(tmp_path / "run", gde="shared").score_map(abnormals[0].image)
    assert not np.array_equal(shared, heatmap.array)
    with pytest.raises(InputError, match="7 x 7 window grid of 128 x 128 normal images.*gde: shared"):
        method.score_map(abnormals[0].image[:, :100])
    with pytest.raises(InputError, match="at stride 8"):
        load_method(tmp_path / "run", stride=8).score_map(abnormals[0].image)


def test_per_location_gaussians_need_normal_images_of_one_size(phantoms, tmp_path):
    images = [phantoms[0][0].load_image(), phantoms[0][1].load_image()[:, :96]]
    method = create_method("cutpaste", preset="tiny", settings={"gde": "per-location"})
    with pytest.raises(ConfigError, match="per-location Gaussians need normal images of one size.*gde: shared"):
        method.fit(images, run_dir=tmp_path)


def test_scoring_refuses_what_the_fit_did_not_prepare(run, phantoms):
    image = phantoms[1][0].image
    with pytest.raises(ConfigError, match="no per-location Gaussians"):
        load_method(run, gde="per-location").score_map(image)
    with pytest.raises(ConfigError, match="fitted on 32 px windows, so patch_size must be 32"):
        load_method(run, patch_size=64).score_map(image)


def test_save_and_load_give_identical_maps_and_state(run, phantoms, tmp_path):
    image = phantoms[1][1].image
    method = load_method(run)
    reference = method.score_map(image)
    method.save(tmp_path / "copy")
    copy = CutPaste.load(tmp_path / "copy")
    assert np.array_equal(copy.score_map(image), reference)
    assert copy.identity() == load_method(run).identity()
    assert (tmp_path / "copy" / "last" / "encoder.safetensors").read_bytes() == (
        run / "last" / "encoder.safetensors").read_bytes()  # fmt: skip
    assert (tmp_path / "copy" / "gde.safetensors").read_bytes() == (run / "gde.safetensors").read_bytes()
    # execution settings change speed, not the map beyond rounding
    unfused = load_method(run, fused=False, bf16=False, channels_last=False).score_map(image)
    assert np.corrcoef(unfused.ravel(), reference.ravel())[0, 1] > 0.99


def test_int8_embeddings_get_their_own_gaussians_and_reload_exactly(data, run, phantoms, tmp_path):
    image = phantoms[1][1].image
    folder = tmp_path / "int8"
    shutil.copytree(run, folder)
    quantized = create_method("cutpaste", preset="tiny", settings={"stride": 16, "int8": True, "device": "cpu"})
    quantized.fit(data / "normal", run_dir=folder, resume=True)  # training is finished: only the Gaussians refit
    fitted = json.loads((folder / "gde.json").read_text())
    assert fitted["int8"] is True and not json.loads((run / "gde.json").read_text())["int8"]
    ranges = [name for name in load_file(folder / "gde.safetensors") if name.startswith("int8.")]
    assert len(ranges) > 10 and not any(name.startswith("int8.") for name in load_file(run / "gde.safetensors"))
    int8_map = quantized.score_map(image)
    assert np.array_equal(load_method(folder).score_map(image), int8_map)  # the saved ranges give the same network
    float_map = load_method(run).score_map(image)
    assert not np.array_equal(int8_map, float_map)
    assert np.corrcoef(int8_map.ravel(), float_map.ravel())[0, 1] > 0.9
    with pytest.raises(ConfigError, match="fitted on int8 embeddings"):
        load_method(folder, int8=False)
    with pytest.raises(ConfigError, match="fitted on bf16/float32 embeddings"):
        load_method(run, int8=True)
    encoder = build_networks(PRESETS["tiny"])["encoder"]
    with pytest.raises(ConfigError, match="on the CPU only"):
        WindowEmbedder(encoder, device="cuda", bf16=True, channels_last=True, fused=True, int8=True)


def test_image_score_pools_the_window_scores_on_tissue(run, phantoms):
    loaded = phantoms[1][0]
    method = load_method(run)
    heatmap = method.heatmap(loaded.image)
    rows, cols = (centres.astype(int) for centres in heatmap.grid.mask_centres())
    on_tissue = loaded.tissue_mask[np.ix_(rows, cols)]
    window_scores = heatmap.window_scores[on_tissue]
    assert method.image_score(loaded.image, heatmap.array, loaded.tissue_mask) == pytest.approx(
        window_scores.max(), rel=1e-6)  # fmt: skip
    mean = load_method(run, image_pooling="mean").image_score(loaded.image, heatmap.array, loaded.tissue_mask)
    assert mean == pytest.approx(window_scores.mean(), rel=1e-5)


def test_a_resumed_run_equals_an_uninterrupted_one(data, tmp_path):
    config = dataclasses.replace(PRESETS["tiny"], steps=4, checkpoint_every=2, device="cpu")

    def trainer(folder, **options):
        return Trainer("cutpaste", config, CutPasteTraining, data / "normal", folder, progress=False, **options)

    assert_resume_is_exact(trainer, ("encoder", "head"), tmp_path)


def test_seconds_per_window_times_the_scoring_path():
    timing = seconds_per_window(PRESETS["tiny"], windows=32)
    assert 0 < timing.seconds_per_window < 1 and timing.patch_size == 32 and timing.width == 4
    assert timing.speedup_over_paper == pytest.approx(0.087 / timing.seconds_per_window)
    quantized = seconds_per_window(PRESETS["tiny"], CutPasteSettings(device="cpu", int8=True), windows=32)
    assert quantized.int8 and not quantized.fused and 0 < quantized.seconds_per_window < 1
