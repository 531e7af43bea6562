"""CRADL: NT-Xent and the Gaussian mixture against hand and library computations, K chosen on held-out data,
nll-grad against autograd, fit and heatmap through the command line, exact resume."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from method_checks import assert_resume_is_exact, picard_ad
from scipy.stats import multivariate_normal

from picard_ad.errors import InputError
from picard_ad.methods import load_method
from picard_ad.methods.vae import (
    CRADL_PRESETS,
    CRADLScores,
    CRADLTraining,
    GaussianMixture,
    SimCLREncoder,
    fit_mixture,
    nt_xent,
    select_mixture,
)
from picard_ad.methods.vae.scores import GradientOptions, gaussian_smooth
from picard_ad.training import Trainer


def test_nt_xent_equals_a_hand_computation():
    first = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    second = torch.tensor([[0.8, 0.6], [0.0, 2.0]])
    views = [[a / math.hypot(*v) for a in v] for v in (first.tolist() + second.tolist())]
    partner = {0: 2, 1: 3, 2: 0, 3: 1}
    total = 0.0
    for i in range(4):
        similarity = {k: sum(a * b for a, b in zip(views[i], views[k])) / 0.5 for k in range(4) if k != i}
        total -= math.log(math.exp(similarity[partner[i]]) / sum(math.exp(s) for s in similarity.values()))
    assert float(nt_xent(first, second, 0.5)) == pytest.approx(total / 4, rel=1e-6)


def _mixture(covariance: str) -> GaussianMixture:
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    if covariance == "full":
        factors = torch.randn(3, 4, 4, generator=generator, dtype=torch.float64)
        covariances = factors @ factors.transpose(1, 2) + 0.5 * torch.eye(4, dtype=torch.float64)
    else:
        covariances = torch.rand(3, 4, generator=generator, dtype=torch.float64) + 0.2
    return GaussianMixture(torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), means, covariances)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_the_mixture_log_likelihood_equals_scipys(covariance):
    mixture = _mixture(covariance)
    x = np.random.default_rng(1).normal(size=(10, 4))
    expected = np.log(sum(
        float(w) * multivariate_normal(m.numpy(), c.numpy() if covariance == "full" else np.diag(c.numpy())).pdf(x)
        for w, m, c in zip(mixture.weights, mixture.means, mixture.covariances)))  # fmt: skip
    assert np.allclose(mixture.log_likelihood(torch.from_numpy(x)).numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_em_finds_the_mixture_scikit_learn_finds(covariance):
    from sklearn.mixture import GaussianMixture as Reference

    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal([0, 0, 0], [1.0, 0.5, 0.8], size=(300, 3)),
                        rng.normal([6, -4, 2], [0.7, 1.2, 0.4], size=(150, 3))])  # fmt: skip
    ours = fit_mixture(x, 2, covariance, tol=1e-8, max_iter=500)
    reference = Reference(2, covariance_type=covariance, tol=1e-10, max_iter=500, random_state=0).fit(x)
    order, reference_order = np.argsort(ours.means[:, 0].numpy()), np.argsort(reference.means_[:, 0])
    assert np.allclose(ours.weights.numpy()[order], reference.weights_[reference_order], atol=1e-6)
    assert np.allclose(ours.means.numpy()[order], reference.means_[reference_order], atol=1e-6)
    assert np.allclose(ours.covariances.numpy()[order], reference.covariances_[reference_order], atol=1e-6)
    assert np.allclose(ours.log_likelihood(torch.from_numpy(x)).numpy(), reference.score_samples(x), atol=1e-6)


def test_k_is_chosen_by_held_out_likelihood():
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]])

    def draw(n):
        return torch.from_numpy(centres[rng.integers(0, 4, size=n)] + rng.normal(scale=0.5, size=(n, 2)))

    selection = select_mixture(draw(400), draw(200), (1, 2, 4, 8), "full", tol=1e-4)
    assert selection.mixture.n_components == 4  # 8 fits the training samples better, not the held-out ones
    assert set(selection.held_out_log_likelihood) == {1, 2, 4, 8}
    assert max(selection.held_out_log_likelihood, key=selection.held_out_log_likelihood.get) == 4
    assert select_mixture(draw(3), draw(3), (1, 2, 4, 8)).held_out_log_likelihood.keys() == {1, 2}


def test_nll_grad_is_the_smoothed_absolute_autograd_gradient():
    torch.manual_seed(0)
    encoder = SimCLREncoder(2).eval()
    mixture = GaussianMixture(torch.tensor([0.4, 0.6], dtype=torch.float64), torch.randn(2, 16, dtype=torch.float64),
                              torch.rand(2, 16, dtype=torch.float64) + 0.1)  # fmt: skip
    x = torch.randn(2, 1, 16, 16)
    scores = CRADLScores(encoder, mixture)
    options = GradientOptions(runs=1, noise=0.0, taps=5, sigma=1.1)
    leaf = x.clone().requires_grad_(True)
    nll = -mixture.log_likelihood(encoder(leaf).double())
    (gradient,) = torch.autograd.grad(nll.sum(), leaf)
    expected = gaussian_smooth(gradient[:, 0].abs(), 5, 1.1)
    assert torch.allclose(scores.maps(x, options), expected, rtol=1e-5, atol=1e-8)
    assert torch.allclose(scores.nll(x), nll.detach())
    smooth = scores.maps(x, GradientOptions(runs=4, noise=0.1, taps=1, sigma=1.0), seed=3)
    assert torch.equal(smooth, scores.maps(x, GradientOptions(runs=4, noise=0.1, taps=1, sigma=1.0), seed=3))


def test_fit_and_heatmap_through_the_command_line(data, tmp_path):
    from picard_ad.io import read_image

    run = tmp_path / "cradl"
    picard_ad("fit", "--method", "cradl", "--preset", "tiny", "--data", data / "normal", "--out", run, "--quiet")
    assert "cradl " in picard_ad("methods") and "--covariance [full|diag]" in picard_ad("fit", "--method", "cradl",
                                                                                         "--help")  # fmt: skip
    for path in ("method.json", "best/encoder.safetensors", "best/head.safetensors", "gmm_best.safetensors"):
        assert (run / path).is_file(), path
    abnormal = sorted((data / "images").iterdir())[0]
    picard_ad("heatmap", abnormal, "--model", run, "--out", tmp_path / "maps", "--score", "nll-grad", "--quiet")
    heatmap = np.load(tmp_path / "maps" / f"{abnormal.stem}_heatmap.npy")
    assert heatmap.shape == (160, 128) and np.isfinite(heatmap).all() and heatmap.std() > 0
    method = load_method(run)
    assert method.selection["components"] in (1, 2, 4) and method.selection["held_out_slices"] == 4
    image = read_image(abnormal).pixels
    assert np.isfinite(method.image_score(image))
    with pytest.raises(InputError, match="no mixture fitted to the .last."):
        load_method(run, checkpoint="last")
    assert "SimCLR encoder" in picard_ad("describe", run)
    json.loads((run / "method.json").read_text())


def test_a_resumed_run_equals_an_uninterrupted_one(data, tmp_path):
    config = dataclasses.replace(CRADL_PRESETS["tiny"], steps=4, checkpoint_every=2, validate_every=1, device="cpu")

    def trainer(folder, **options):
        return Trainer("cradl", config, CRADLTraining, data / "normal", folder, progress=False, **options)

    assert_resume_is_exact(trainer, ("encoder", "head"), tmp_path)
