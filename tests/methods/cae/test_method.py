"""The CAE end to end: scores through the method against hand computations, fit and heatmap through the command
line, the preprocessing at fit and score time, augmentation, state round trips and exact resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from method_checks import assert_resume_is_exact, picard_ad, write_phantom_pngs
from scipy import ndimage
from torch import nn

from picard_ad.benchmark import ablations
from picard_ad.cli.benchmark import command
from picard_ad.data.datasets import phantom_dataset
from picard_ad.data.phantoms import PhantomConfig
from picard_ad.errors import ConfigError
from picard_ad.methods import create_method, load_method
from picard_ad.methods.cae import CAE, PRESETS, CAESettings, CAETraining, ConvAutoencoder, TrainingImage, augment
from picard_ad.training import Trainer

PHANTOM = PhantomConfig(size=(128, 128), pixel_spacing_mm=1.0)


@pytest.fixture(scope="module")
def phantoms():
    samples = phantom_dataset(3, 2, PHANTOM, seed=13)
    return [s for s in samples if s.is_normal], [s.load() for s in samples if not s.is_normal]


@pytest.fixture(scope="module")
def data(tmp_path_factory, phantoms):
    """The phantoms as PNGs: normal/, abnormal/ and masks/."""
    root = tmp_path_factory.mktemp("cae")
    return write_phantom_pngs(root, *phantoms)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A tiny CAE fitted through ``picard-ad fit`` with the full chain and CLAHE."""
    folder = tmp_path_factory.mktemp("run") / "run"
    config = data / "fit.yaml"
    config.write_text("equalization_order: after-augmentation\nsettings:\n  equalization: clahe\n  top_k: 50\n")
    picard_ad("fit", "--method", "cae", "--preset", "tiny", "--data", data / "normal", "--out", folder,
              "--config", config, "--quiet")  # fmt: skip
    return folder


class Constant(nn.Module):
    """A stand-in network whose reconstruction is known exactly: every pixel ``value``."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.full_like(images, self.value)


def _with_network(network: nn.Module, **settings) -> CAE:
    """A CAE scoring 32 x 32 images at 32 px through ``network``, treated as fitted."""
    method = CAE(dataclasses.replace(PRESETS["tiny"], input_size=32), CAESettings(**settings))
    method.network, method.fitted = network.eval(), True
    return method


def test_scores_through_the_method_by_hand():
    rng = np.random.default_rng(3)
    image = rng.random((32, 32)).astype(np.float32)
    method = _with_network(Constant(0.25), preprocessing="raw", equalization="none", top_k=10)
    heatmaps = method.heatmaps(image, method.score_names)
    error = image.astype(np.float64) - 0.25
    assert np.allclose(heatmaps["mse"].array, error**2, atol=1e-6)  # raw, 32 px: no crop, no resize
    assert np.allclose(heatmaps["l1"].array, np.abs(error), atol=1e-6)
    assert np.array_equal(heatmaps["mse-top-k"].array, heatmaps["mse"].array)
    scores = method.image_scores(image)
    assert scores["mse"] == pytest.approx(float(np.mean(error**2)), rel=1e-5)
    assert scores["l1"] == pytest.approx(float(np.mean(np.abs(error))), rel=1e-5)
    assert scores["mse-top-k"] == pytest.approx(float(np.sort((error**2).ravel())[-10:].mean()), rel=1e-5)
    assert scores["l1-top-k"] == pytest.approx(float(np.sort(np.abs(error).ravel())[-10:].mean()), rel=1e-5)
    for name in method.score_names:
        scorer = _with_network(Constant(0.25), preprocessing="raw", equalization="none", top_k=10, score=name)
        assert scorer.image_score(image) == pytest.approx(scores[name])


def test_scores_of_a_tiny_network_by_hand():
    torch.manual_seed(0)
    network = ConvAutoencoder(width=2, levels=1).eval()
    image = np.random.default_rng(4).random((32, 32)).astype(np.float32)
    with torch.no_grad():
        reconstruction = network(torch.from_numpy(image)[None, None])[0, 0].numpy().astype(np.float64)
    method = _with_network(network, preprocessing="raw", equalization="none")
    assert method.image_score(image) == pytest.approx(float(np.mean((image - reconstruction) ** 2)), rel=1e-5)
    assert np.allclose(method.score_map(image, "l1"), np.abs(image - reconstruction), atol=1e-6)


def test_the_full_chain_scores_on_the_foreground_only():
    image = np.zeros((64, 64), np.float32)
    image[8:56, 12:52] = 0.3  # the carrier
    texture = ndimage.gaussian_filter(np.random.default_rng(5).random((32, 24)), 2)
    image[16:48, 20:44] = 0.6 + 0.3 * (texture - texture.min()) / np.ptp(texture)  # the object on it
    method = _with_network(Constant(0.0), preprocessing="full", equalization="none", detection_size=64)
    heatmap = method.heatmap(image).array
    assert heatmap.shape == image.shape
    assert np.all(heatmap[:6] == 0) and np.all(heatmap[:, :10] == 0)  # outside the carrier box
    assert np.all(heatmap[10:54, 14:18] == 0) and np.all(heatmap[10:14, 14:50] == 0)  # the carrier around it
    inner = image[20:44, 24:40]
    assert np.allclose(heatmap[20:44, 24:40], inner**2, atol=0.03)
    # the image score counts the object only: a constant-0 reconstruction errs by the object's intensities
    assert method.image_score(image) == pytest.approx(float(np.mean(image[16:48, 20:44] ** 2)), rel=0.05)


def test_fit_and_heatmap_through_the_command_line(data, run, tmp_path):
    assert "cae " in picard_ad("methods") and "mse*" in picard_ad("methods")
    fit_help = picard_ad("fit", "--method", "cae", "--help")
    assert "--equalization-order [before-augmentation|after-augmentation]" in fit_help
    assert "--augmentation [advanced|default|none]" in fit_help
    for path in ("method.json", "last/autoencoder.safetensors", "best/autoencoder.safetensors", "loss_curve.png",
                 "validation.csv", "samples/step_00000004.png"):  # fmt: skip
        assert (run / path).is_file(), path
    record = json.loads((run / "method.json").read_text())
    assert record["name"] == "cae" and record["train"]["equalization_order"] == "after-augmentation"
    assert record["settings"]["equalization"] == "clahe" and record["settings"]["top_k"] == 50
    trained = json.loads((run / "best" / "config.json").read_text())["preprocessing"]
    assert trained["equalization"] == "clahe" and trained["preprocessing"] == "full"
    heatmap_help = picard_ad("heatmap", "--model", run, "--help")
    assert "--preprocessing [raw|crop|full]" in heatmap_help and "--top-k" in heatmap_help

    out = tmp_path / "maps"
    picard_ad("heatmap", data / "abnormal", "--model", run, "--out", out, "--annotations", data / "masks", "--quiet")
    sidecar = json.loads((out / "abnormal_0000.json").read_text())
    assert sidecar["method"] == "cae" and sidecar["score"] == "mse"
    assert len(sidecar["key"]["method"]["state_sha256"]) == 64
    heatmap = np.load(out / "abnormal_0000_heatmap.npy")
    assert heatmap.shape == (128, 128) and heatmap.dtype == np.float32 and np.isfinite(heatmap).all()
    assert "bottleneck: 8 x 8 x 16 at 32 px input" in picard_ad("describe", run)


def test_preprocessing_variants_rescore_the_fitted_network(run, phantoms):
    image = phantoms[1][0].image
    maps = {level: load_method(run, preprocessing=level).score_map(image) for level in ("raw", "crop", "full")}
    assert all(m.shape == image.shape and np.isfinite(m).all() for m in maps.values())
    assert not np.array_equal(maps["raw"], maps["full"])
    assert load_method(run).model["trained_preprocessing"]["preprocessing"] == "full"


def test_save_load_and_checkpoint_round_trip(run, phantoms, tmp_path):
    image = phantoms[1][1].image
    method = load_method(run)
    reference = method.score_map(image)
    method.save(tmp_path / "copy")
    copy = CAE.load(tmp_path / "copy")
    assert np.array_equal(copy.score_map(image), reference)
    assert copy.image_score(image) == method.image_score(image)
    assert copy.identity() == method.identity()
    assert (tmp_path / "copy" / "best" / "autoencoder.safetensors").read_bytes() == (
        run / "best" / "autoencoder.safetensors").read_bytes()  # fmt: skip
    last = load_method(run, checkpoint="last")
    assert last.checkpoint.name == "last" and last.identity() != method.identity()


def test_a_resumed_run_equals_an_uninterrupted_one(data, tmp_path):
    config = dataclasses.replace(PRESETS["tiny"], steps=4, checkpoint_every=2, device="cpu")

    def trainer(folder, **options):
        return Trainer("cae", config, CAETraining, data / "normal", folder, progress=False, **options)

    assert_resume_is_exact(trainer, ("autoencoder",), tmp_path)


def test_resuming_with_another_chain_is_refused(phantoms, tmp_path):
    normals = phantoms[0]
    create_method("cae", preset="tiny").fit(normals, run_dir=tmp_path / "run")
    other = create_method("cae", preset="tiny", settings={"preprocessing": "crop"})
    with pytest.raises(ConfigError, match="resume with the preprocessing settings it started with"):
        other.fit(normals, run_dir=tmp_path / "run", resume=True)


def test_the_training_batches_mask_the_background(data):
    config = dataclasses.replace(PRESETS["tiny"], device="cpu", augmentation="none")
    trainer = Trainer("cae", config, CAETraining, data / "normal", data.parent / "batches", progress=False)
    images, masks = trainer.task.draw(4)
    assert images.shape == masks.shape == (4, 1, 32, 32)
    assert torch.all(images[masks == 0] == 0)  # full chain: background and padding are 0 and not counted
    assert 0.2 < float(masks.mean()) < 0.95
    trainer.task.close()


def test_augmentation_is_seeded_and_keeps_image_and_mask_together():
    image = np.zeros((20, 30), np.float32)
    image[5:15, 2:12] = 0.5
    item = TrainingImage(image, image > 0)
    assert augment(item, np.random.default_rng(0), "none") is item
    for seed in range(10):
        first = augment(item, np.random.default_rng(seed), "advanced")
        again = augment(item, np.random.default_rng(seed), "advanced")
        assert np.array_equal(first.image, again.image) and np.array_equal(first.mask, again.mask)
        assert first.image.shape == image.shape and first.image.max() <= 1.0
        inside = first.image[first.mask]
        assert inside.size and (inside > 0.2).mean() > 0.85  # the mask still lies on the object (edges blur)
    flipped = [augment(item, np.random.default_rng(seed), "default") for seed in range(20)]
    assert any(np.array_equal(f.image, image[:, ::-1]) for f in flipped)
    assert all(np.array_equal(f.image > 0, f.mask) for f in flipped)


def test_benchmark_ablation_rows_use_each_variants_own_image_score(tmp_path, monkeypatch):
    data = {"kind": "phantoms", "n_normal": 3, "n_abnormal": 2, "size": [128, 128], "pixel_spacing_mm": 1.0,
            "test_normal_patients": 1}  # fmt: skip
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "data": data, "seed": 3, "methods": [{"name": "cae", "preset": "tiny", "train": {"device": "cpu"}}],
        "ablations": [{"method": "cae", "setting": "score", "values": ["mse", "l1-top-k"]},
                      {"method": "cae", "setting": "preprocessing", "values": ["raw", "full"]}],
    }))  # fmt: skip
    evaluated = []
    evaluate_maps = ablations.evaluate_maps

    def recording(method, loaded, test, maps, *args, **kwargs):
        evaluated.append((method.settings.score, method.settings.preprocessing))
        return evaluate_maps(method, loaded, test, maps, *args, **kwargs)

    monkeypatch.setattr(ablations, "evaluate_maps", recording)
    result = CliRunner().invoke(command, ["--config", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert evaluated == [("mse", "full"), ("l1-top-k", "full"), ("mse", "raw"), ("mse", "full")]
    rows = json.loads((tmp_path / "out" / "metrics.json").read_text())["ablations"]
    assert [(row["setting"], row["value"]) for row in rows] == [
        ("score", "mse"),
        ("score", "l1-top-k"),
        ("preprocessing", "raw"),
        ("preprocessing", "full"),
    ]
