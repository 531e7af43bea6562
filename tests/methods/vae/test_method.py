"""The VAE and the DAE end to end: fit and heatmap through the command line, sample scores, the plateau rule,
state round trips and exact resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from method_checks import assert_resume_is_exact, picard_ad

from picard_ad.methods import create_method, load_method
from picard_ad.methods.vae import DAE_PRESETS, VAE_PRESETS, VAE_SCORES, DAETraining, VAETraining
from picard_ad.training import Trainer


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "vae"
    picard_ad("fit", "--method", "vae", "--preset", "tiny", "--data", data / "normal", "--out", folder, "--quiet")
    return folder


def test_the_methods_are_listed_with_their_scores():
    listed = picard_ad("methods")
    assert "vae " in listed and "combi*" in listed and "kl-grad" in listed and "sampling-variance" in listed
    assert "dae " in listed
    assert "--likelihood [gaussian|laplace]" in picard_ad("fit", "--method", "vae", "--help")
    assert "--noise-std" in picard_ad("fit", "--method", "dae", "--help")


def test_fit_and_heatmap_every_score_through_the_command_line(data, run, tmp_path):
    for path in ("method.json", "best/autoencoder.safetensors", "last/autoencoder.safetensors", "loss_curve.png",
                 "validation.csv", "samples/step_00000004.png"):  # fmt: skip
        assert (run / path).is_file(), path
    record = json.loads((run / "method.json").read_text())
    assert record["name"] == "vae" and record["train"]["input_size"] == 32 and record["settings"]["score"] == "combi"
    assert "--gradient [smoothgrad|vanilla]" in picard_ad("heatmap", "--model", run, "--help")
    abnormal = sorted((data / "images").iterdir())[0]
    for score in VAE_SCORES:
        out = tmp_path / score
        picard_ad("heatmap", abnormal, "--model", run, "--out", out, "--score", score, "--quiet")
        heatmap = np.load(out / f"{abnormal.stem}_heatmap.npy")
        assert heatmap.shape == (160, 128) and heatmap.dtype == np.float32 and np.isfinite(heatmap).all()
        sidecar = json.loads((out / f"{abnormal.stem}.json").read_text())
        assert sidecar["method"] == "vae" and sidecar["score"] == score
    assert "16/32/64/256" in picard_ad("describe", run)


def test_sample_scores_are_the_loss_terms(run, data):
    from picard_ad.io import read_image

    image = read_image(sorted((data / "images").iterdir())[0]).pixels
    method = load_method(run)
    terms = method.sample_terms(image)
    assert terms["kl"] >= 0 and np.isfinite(terms["rec"])
    assert method.image_score(image) == pytest.approx(terms["kl"] + terms["rec"])
    assert load_method(run, sample_score="kl").image_score(image) == pytest.approx(terms["kl"])
    assert load_method(run, sample_score="rec").image_score(image) == pytest.approx(terms["rec"])
    by_map = load_method(run, sample_score="map")
    scores = by_map.score_map(image)
    assert by_map.image_score(image, scores) == pytest.approx(np.quantile(scores[image > 0.02], 0.99), rel=0.05)


def test_last_and_best_checkpoints_and_the_copy_score_alike(run, data, tmp_path):
    from picard_ad.io import read_image

    image = read_image(sorted((data / "images").iterdir())[1]).pixels
    method = load_method(run, checkpoint="last", gradient="vanilla")
    reference = method.score_map(image)
    method.save(tmp_path / "copy")
    copy = load_method(tmp_path / "copy")
    assert np.array_equal(copy.score_map(image), reference) and copy.identity() == method.identity()
    assert (tmp_path / "copy" / "last" / "autoencoder.safetensors").read_bytes() == (
        run / "last" / "autoencoder.safetensors").read_bytes()  # fmt: skip


def test_the_learning_rate_drops_on_a_validation_plateau(data, tmp_path):
    config = dataclasses.replace(VAE_PRESETS["tiny"], plateau_patience=2, plateau_factor=0.5, device="cpu")
    trainer = Trainer("vae", config, VAETraining, data / "normal", tmp_path / "run", progress=False)
    task = trainer.task
    values = iter([3.0, 2.0, 2.5, 2.1, 1.0, 1.5, 1.5])
    task.loss_terms = lambda x, generator=None: {"loss": torch.full((len(x),), next(values))}
    rates = []
    for _ in range(7):
        task.validate()
        rates.append(task.lr)
    assert rates == [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 2.5e-4]
    trainer.task.close()


@pytest.mark.parametrize("name, presets, step_class", [("vae", VAE_PRESETS, VAETraining),
                                                       ("dae", DAE_PRESETS, DAETraining)])  # fmt: skip
def test_a_resumed_run_equals_an_uninterrupted_one(name, presets, step_class, data, tmp_path):
    config = dataclasses.replace(presets["tiny"], steps=4, checkpoint_every=2, validate_every=1, plateau_patience=1,
                                 device="cpu")  # fmt: skip

    def trainer(folder, **options):
        return Trainer(name, config, step_class, data / "normal", folder, progress=False, **options)

    assert_resume_is_exact(trainer, ("autoencoder",), tmp_path)
    state = [json.loads((tmp_path / folder / "last" / "trainer_state.json").read_text())["ranks"][0]["task"]
             for folder in ("whole", "killed")]  # fmt: skip
    assert state[0] == state[1]


def test_the_dae_fits_and_scores_reconstruction_error(data, tmp_path):
    from picard_ad.io import read_image

    method = create_method("dae", preset="tiny").fit(data / "normal", run_dir=tmp_path / "dae")
    image = read_image(sorted((data / "images").iterdir())[0]).pixels
    heatmaps = method.heatmaps(image, ("rec", "rec-smoothed"))
    assert heatmaps["rec"].array.shape == image.shape and heatmaps["rec"].array.std() > 0
    assert method.image_score(image) == pytest.approx(method.sample_terms(image)["rec"])
    assert load_method(tmp_path / "dae").identity() == method.identity()


def test_the_128_px_variant_fits_and_scores(data, tmp_path):
    from picard_ad.io import read_image

    method = create_method("vae", preset="tiny", train={"input_size": 128, "steps": 2},
                           settings={"smoothgrad_runs": 2})  # fmt: skip
    method.fit(data / "normal", run_dir=tmp_path / "run")
    image = read_image(sorted((data / "images").iterdir())[0]).pixels
    heatmap = method.heatmap(image, "elbo-grad")
    assert heatmap.array.shape == image.shape and heatmap.settings["input_size"] == 128
    assert np.isfinite(heatmap.array).all() and heatmap.array.std() > 0
