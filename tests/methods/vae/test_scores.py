"""The VAE's scores against hand computations on a tiny random network, and its loss terms against torch's
distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from picard_ad.methods.vae import (
    ConvAutoencoder,
    GradientOptions,
    ReconstructionScores,
    VAEScores,
    gaussian_smooth,
    kl_divergence,
    pixel_nll,
)
from picard_ad.methods.vae.scores import SAMPLING_STREAM
from picard_ad.methods.vae.settings import opencv_sigma

VANILLA_UNSMOOTHED = GradientOptions(runs=1, noise=0.0, taps=1, sigma=1.0)


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(3)
    return ConvAutoencoder(input_size=16, z_dim=4).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(5))


def by_hand(network, x, likelihood="gaussian", scale=1.0):
    """(dKL/dx, dL_rec/dx, |x - g(f_mu(x))|) of the closed forms, (N, S, S) each."""
    inputs = x.clone().requires_grad_(True)
    mean, log_sigma = network.encode(inputs)
    kl = 0.5 * (mean**2 + torch.exp(log_sigma) ** 2 - 1 - torch.log(torch.exp(log_sigma) ** 2)).sum()
    (kl_gradient,) = torch.autograd.grad(kl, inputs)
    inputs = x.clone().requires_grad_(True)
    mean, _ = network.encode(inputs)
    reconstruction = network.decode(mean)
    if likelihood == "gaussian":
        rec = ((inputs - reconstruction) ** 2 / (2 * scale**2)).sum()
    else:
        rec = ((inputs - reconstruction).abs() / scale).sum()
    (rec_gradient,) = torch.autograd.grad(rec, inputs)
    error = (x - network.decode(network.encode(x)[0])).abs()
    return kl_gradient[:, 0], rec_gradient[:, 0], error[:, 0].detach()


def test_vanilla_gradients_and_rec_equal_the_closed_forms(network, x):
    maps = VAEScores(network, "gaussian", 1.0).maps(x, ("kl-grad", "rec-grad", "elbo-grad", "rec", "combi"),
                                                      VANILLA_UNSMOOTHED)  # fmt: skip
    kl_gradient, rec_gradient, error = by_hand(network, x)
    torch.testing.assert_close(maps["kl-grad"], kl_gradient.abs())
    torch.testing.assert_close(maps["rec-grad"], rec_gradient.abs())
    torch.testing.assert_close(maps["elbo-grad"], (kl_gradient + rec_gradient).abs())
    torch.testing.assert_close(maps["rec"], error)
    assert torch.equal(maps["combi"], maps["rec"] * maps["kl-grad"])
    assert maps["kl-grad"].shape == (2, 16, 16) and maps["kl-grad"].dtype == torch.float32


def test_the_laplace_likelihood_and_its_scale_change_rec_grad_only(network, x):
    maps = VAEScores(network, "laplace", 2.0).maps(x, ("rec-grad", "kl-grad", "rec"), VANILLA_UNSMOOTHED)
    kl_gradient, rec_gradient, error = by_hand(network, x, "laplace", 2.0)
    torch.testing.assert_close(maps["rec-grad"], rec_gradient.abs())
    torch.testing.assert_close(maps["kl-grad"], kl_gradient.abs())
    torch.testing.assert_close(maps["rec"], error)


def test_smoothed_maps_equal_scipy_gaussian_filter_with_the_kernels_truncation(network, x):
    for taps, sigma in ((5, opencv_sigma(5)), (7, 3.0)):
        options = GradientOptions(runs=1, noise=0.0, taps=taps, sigma=sigma)
        maps = VAEScores(network, "gaussian", 1.0).maps(x, ("kl-grad", "rec-smoothed", "combi"), options)
        kl_gradient, _, error = by_hand(network, x)
        truncate = ((taps - 1) / 2) / sigma
        for index in range(2):
            expected = ndimage.gaussian_filter(kl_gradient[index].abs().double().numpy(), sigma, mode="constant",
                                               truncate=truncate)  # fmt: skip
            np.testing.assert_allclose(maps["kl-grad"][index].numpy(), expected, rtol=1e-4, atol=1e-7)
            smoothed_error = ndimage.gaussian_filter(error[index].double().numpy(), sigma, mode="constant",
                                                     truncate=truncate)  # fmt: skip
            np.testing.assert_allclose(maps["rec-smoothed"][index].numpy(), smoothed_error, rtol=1e-4, atol=1e-6)
        assert torch.equal(maps["combi"], error * maps["kl-grad"])
    assert opencv_sigma(5) == pytest.approx(1.1)


def test_gaussian_smoothing_of_a_delta_is_the_normalised_kernel():
    delta = torch.zeros(1, 9, 9)
    delta[0, 4, 4] = 1.0
    smoothed = gaussian_smooth(delta, 5, 1.1)
    assert smoothed.sum() == pytest.approx(1.0) and smoothed[0, 4, 4] == smoothed.max()
    assert torch.equal(gaussian_smooth(delta, 1, 1.0), delta)


def test_smoothgrad_averages_the_gradients_of_noisy_copies_before_the_absolute_value(network, x):
    options = GradientOptions(runs=3, noise=0.1, taps=1, sigma=1.0)
    maps = VAEScores(network, "gaussian", 1.0).maps(x, ("kl-grad", "elbo-grad"), options, seed=9)
    noise = 0.1 * torch.randn((3, *x.shape), generator=torch.Generator().manual_seed(9))
    kl_sum, elbo_sum = torch.zeros(2, 16, 16), torch.zeros(2, 16, 16)
    for run in range(3):
        kl_gradient, rec_gradient, _ = by_hand(network, x + noise[run])
        kl_sum += kl_gradient
        elbo_sum += kl_gradient + rec_gradient
    torch.testing.assert_close(maps["kl-grad"], (kl_sum / 3).abs())
    torch.testing.assert_close(maps["elbo-grad"], (elbo_sum / 3).abs())
    again = VAEScores(network, "gaussian", 1.0).maps(x, ("kl-grad",), options, seed=9)
    assert torch.equal(again["kl-grad"], maps["kl-grad"])  # seeded per call: repeatable
    vanilla = VAEScores(network, "gaussian", 1.0).maps(x, ("kl-grad",), VANILLA_UNSMOOTHED)
    assert not torch.equal(vanilla["kl-grad"], maps["kl-grad"])


def test_sampling_variance_is_the_variance_of_decodes_of_sampled_codes(network, x):
    maps = VAEScores(network, "gaussian", 1.0).maps(x, ("sampling-variance",), VANILLA_UNSMOOTHED, n_samples=5,
                                                      seed=4)  # fmt: skip
    draws = torch.randn((5, 2, 4), generator=torch.Generator().manual_seed(4 + SAMPLING_STREAM))
    with torch.no_grad():
        mean, log_sigma = network.encode(x)
        decodes = [network.decode(mean + log_sigma.exp() * draws[k])[:, 0] for k in range(5)]
    expected = np.var(torch.stack(decodes).numpy(), axis=0)
    np.testing.assert_allclose(maps["sampling-variance"].numpy(), expected, rtol=1e-4, atol=1e-9)
    options = GradientOptions(runs=2, noise=0.1, taps=1, sigma=1.0)
    together = VAEScores(network, "gaussian", 1.0).maps(x, ("kl-grad", "sampling-variance"), options, n_samples=5,
                                                          seed=4)  # fmt: skip
    assert torch.equal(together["sampling-variance"], maps["sampling-variance"])  # its own random stream


def test_sample_terms_are_the_closed_form_kl_and_the_summed_nll(network, x):
    kl, rec = VAEScores(network, "gaussian", 0.5).terms(x)
    with torch.no_grad():
        mean, log_sigma = network.encode(x)
        posterior = torch.distributions.Normal(mean, log_sigma.exp())
        prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
        expected_kl = torch.distributions.kl_divergence(posterior, prior).sum(dim=1)
        reconstruction = network.decode(mean)
        expected_rec = -torch.distributions.Normal(reconstruction, 0.5).log_prob(x).flatten(1).sum(dim=1)
    torch.testing.assert_close(kl.detach(), expected_kl)
    torch.testing.assert_close(rec.detach(), expected_rec)


def test_pixel_nll_is_the_negative_log_density():
    x, mean = torch.randn(1, 1, 4, 4), torch.randn(1, 1, 4, 4)
    torch.testing.assert_close(pixel_nll(x, mean, "gaussian", 1.5), -torch.distributions.Normal(mean, 1.5).log_prob(x))
    torch.testing.assert_close(pixel_nll(x, mean, "laplace", 0.7), -torch.distributions.Laplace(mean, 0.7).log_prob(x))
    assert kl_divergence(torch.zeros(1, 3), torch.zeros(1, 3)).item() == 0.0
    assert pixel_nll(x, x, "gaussian", 1.0).mean().item() == pytest.approx(0.5 * math.log(2 * math.pi))


def test_the_autoencoder_scores_reconstruction_error_only():
    torch.manual_seed(1)
    network = ConvAutoencoder(input_size=16, z_dim=4, variational=False).eval()
    x = torch.randn(1, 1, 16, 16)
    scores = ReconstructionScores(network, "gaussian", 1.0)
    maps = scores.maps(x, ("rec", "rec-smoothed"), GradientOptions(taps=3, sigma=1.0))
    with torch.no_grad():
        error = (x - network.decode(network.encoder(x)))[:, 0].abs()
    torch.testing.assert_close(maps["rec"], error)
    torch.testing.assert_close(maps["rec-smoothed"], gaussian_smooth(error, 3, 1.0))
    kl, rec = scores.terms(x)
    assert kl is None and rec.item() == pytest.approx(float((0.5 * error**2).sum() + 256 * 0.5 * math.log(2 * math.pi)),
                                                      rel=1e-5)  # fmt: skip
