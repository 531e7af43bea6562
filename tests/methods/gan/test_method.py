"""The GANs end to end: scores through the methods against direct computations, fit and heatmap through the command
line, state round trips and exact resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from method_checks import assert_resume_is_exact, picard_ad, write_phantom_pngs

from picard_ad.data.datasets import phantom_dataset
from picard_ad.data.phantoms import PhantomConfig
from picard_ad.methods import load_method, method_class
from picard_ad.methods.gan import build_networks, latent_search
from picard_ad.methods.gan.training import TRAINING
from picard_ad.training import Trainer

PHANTOM = PhantomConfig(size=(128, 128), pixel_spacing_mm=1.0)
GANS = ("dcgan", "alpha-gan", "bigan")


@pytest.fixture(scope="module")
def phantoms():
    samples = phantom_dataset(3, 2, PHANTOM, seed=13)
    return [s for s in samples if s.is_normal], [s.load() for s in samples if not s.is_normal]


@pytest.fixture(scope="module")
def data(tmp_path_factory, phantoms):
    """The phantoms as PNGs: normal/, abnormal/ and masks/."""
    root = tmp_path_factory.mktemp("gan")
    return write_phantom_pngs(root, *phantoms)


@pytest.fixture(scope="module", params=GANS)
def run(request, data, tmp_path_factory):
    """(name, run folder): a tiny GAN fitted through ``picard-ad fit`` on the full chain."""
    folder = tmp_path_factory.mktemp("run") / request.param
    config = data / "fit.yaml"
    config.write_text("settings:\n  equalization: global\n")
    picard_ad("fit", "--method", request.param, "--preset", "tiny", "--data", data / "normal", "--out", folder,
              "--config", config, "--quiet")  # fmt: skip
    return request.param, folder


def _fitted(name: str, **settings):
    """A GAN of tiny networks (seeded, untrained) scoring 32 x 32 images at 32 px, treated as fitted."""
    cls = method_class(name)
    method = cls(cls.presets["tiny"], cls.settings_class(preprocessing="raw", equalization="none", **settings))
    torch.manual_seed(0)
    method.networks = {key: net.eval() for key, net in build_networks(name, method.train_config).items()}
    method.fitted = True
    return method


def test_the_gans_are_listed_with_their_scores():
    listing = picard_ad("methods")
    assert "dcgan " in listing and "disc*" in listing and "anogan" in listing
    assert "alpha-gan " in listing and "bigan " in listing
    assert "--minibatch-kernels" in picard_ad("fit", "--method", "dcgan", "--help")


@pytest.mark.parametrize("name", GANS)
def test_disc_is_one_value_on_the_whole_mask(name):
    method = _fitted(name)
    image = np.random.default_rng(3).random((32, 32)).astype(np.float32)
    heatmap = method.heatmap(image, "disc").array
    value = method.image_scores(image)["disc"]
    assert 0 < value < 1 and np.allclose(heatmap, value, atol=1e-6)  # raw: the mask is the whole image
    x = torch.from_numpy(image)[None, None] * 2 - 1
    with torch.no_grad():
        if name == "bigan":
            logit = method.networks["discriminator"](x, method.networks["encoder"](x)[0])
        else:
            logit = method.networks["discriminator"](x, against_reference=True)
    assert value == pytest.approx(1 - float(torch.sigmoid(logit)[0]), rel=1e-5)


def test_anogan_through_the_method_equals_the_latent_search():
    method = _fitted("dcgan", latent_iterations=30, latent_lambda=0.1, score="anogan")
    image = np.random.default_rng(4).random((32, 32)).astype(np.float32)
    x = torch.from_numpy(image)[None, None] * 2 - 1
    found = latent_search(method.networks["generator"], method.networks["discriminator"], x, torch.ones_like(x),
                          iterations=30, lr=0.01, lam=0.1, seed=0)  # fmt: skip
    assert method.image_score(image) == pytest.approx(found.score, rel=1e-5)
    assert np.allclose(method.score_map(image), found.residual_map, atol=1e-6)


@pytest.mark.parametrize("name", ("alpha-gan", "bigan"))
def test_reconstruction_scores_by_hand(name):
    method = _fitted(name, top_k=10)
    image = np.random.default_rng(5).random((32, 32)).astype(np.float32)
    x = torch.from_numpy(image)[None, None] * 2 - 1
    with torch.no_grad():
        reconstruction = (method.networks["generator"](method.networks["encoder"](x)[0]) + 1) / 2
    error = image.astype(np.float64) - reconstruction[0, 0].numpy()
    scores = method.image_scores(image)
    assert scores["mse"] == pytest.approx(float(np.mean(error**2)), rel=1e-5)
    assert scores["l1"] == pytest.approx(float(np.mean(np.abs(error))), rel=1e-5)
    assert scores["l1-top-k"] == pytest.approx(float(np.sort(np.abs(error).ravel())[-10:].mean()), rel=1e-5)
    assert np.allclose(method.score_map(image), error**2, atol=1e-6)
    assert np.allclose(method.score_map(image, "l1"), np.abs(error), atol=1e-6)


def test_fit_and_heatmap_through_the_command_line(data, run, tmp_path):
    name, folder = run
    for path in ("method.json", "last/generator.safetensors", "last/discriminator.safetensors", "loss_curve.png",
                 "validation.csv", "samples/step_00000004.png"):  # fmt: skip
        assert (folder / path).is_file(), path
    record = json.loads((folder / "method.json").read_text())
    assert record["name"] == name and record["settings"]["checkpoint"] == "last"
    trained = json.loads((folder / "last" / "config.json").read_text())["preprocessing"]
    assert trained["preprocessing"] == "full" and trained["equalization"] == "global"
    out = tmp_path / "maps"
    picard_ad("heatmap", data / "abnormal", "--model", folder, "--out", out, "--annotations", data / "masks",
              "--quiet")  # fmt: skip
    sidecar = json.loads((out / "abnormal_0000.json").read_text())
    assert sidecar["method"] == name and len(sidecar["key"]["method"]["state_sha256"]) == 64
    note = sidecar["slices"][0]["heatmap"]["settings"].get("map_note", "")
    assert ("does not localize" in note) == (sidecar["score"] == "disc")
    heatmap = np.load(out / "abnormal_0000_heatmap.npy")
    assert heatmap.shape == (128, 128) and heatmap.dtype == np.float32 and np.isfinite(heatmap).all()
    assert "32 px images" in picard_ad("describe", folder)


def test_save_load_round_trip(run, phantoms, tmp_path):
    name, folder = run
    image = phantoms[1][1].image
    method = load_method(folder, latent_iterations=5) if name == "dcgan" else load_method(folder)
    maps = method.heatmaps(image, method.score_names)
    scores = method.image_scores(image)
    method.save(tmp_path / "copy")
    copy = method_class(name).load(tmp_path / "copy", **({"latent_iterations": 5} if name == "dcgan" else {}))
    assert copy.identity() == method.identity() and copy.image_scores(image) == scores
    for score, heatmap in copy.heatmaps(image, method.score_names).items():
        assert np.array_equal(heatmap.array, maps[score].array), score


@pytest.mark.parametrize("name", GANS)
def test_a_resumed_run_equals_an_uninterrupted_one(name, data, tmp_path):
    config = dataclasses.replace(method_class(name).presets["tiny"], steps=4, checkpoint_every=2, device="cpu")

    def trainer(folder, **options):
        return Trainer(name, config, TRAINING[name], data / "normal", folder, progress=False, **options)

    assert_resume_is_exact(trainer, list(build_networks(name, config)), tmp_path)

