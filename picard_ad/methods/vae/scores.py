"""The VAE's pixel and sample scores (thesis section 3.1.3), on batches of network inputs at the model size.

Pixel scores, each (N, S, S) float32, higher = more anomalous:

- ``rec``: |x - g(f_mu(x))| (eq. 3.6), z-score units; ``rec-smoothed``: the same, Gaussian-smoothed.
- ``kl-grad``: |d L_KL / dx| (eq. 3.8); ``rec-grad``: |d L_rec / dx| (eq. 3.9); ``elbo-grad``: |d (L_KL + L_rec) / dx|
  (eq. 3.7, the "score"). Gradients are taken through the encoder and, for L_rec, through the decoder and the
  target x alike; they are Gaussian-smoothed after the absolute value. SmoothGrad averages the signed gradients of
  ``runs`` noisy copies of x, then takes the absolute value; vanilla is one backward pass at x.
- ``combi``: ``rec`` times ``kl-grad`` (eq. 3.10).
- ``sampling-variance``: the per-pixel variance of ``n_samples`` decodes of z ~ q(z|x).

Sample scores, (N,) nats: L_KL, L_rec (posterior mean) and their sum, the negative ELBO (eq. 3.14); the method
adds Davletshina et al.'s MSE and L1 of the posterior-mean reconstruction (``reconstruct``) over the tissue.
Random numbers (SmoothGrad's noise, sampled codes) come from generators seeded anew per call, one per use, so a
score depends only on the image and the settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from picard_ad.methods.vae.losses import Likelihood, kl_divergence, reconstruction_nll
from picard_ad.methods.vae.networks import ConvAutoencoder

SAMPLING_STREAM = 1_000_003
"""Sampled codes come from a generator seeded with seed + this, SmoothGrad's noise from one seeded with seed, so
each map is the same whichever other maps are computed with it."""


def gaussian_kernel(taps: int, sigma: float) -> torch.Tensor:
    """(taps,) float32 1-D Gaussian weights summing to 1 (scipy's ``gaussian_filter`` kernel with radius
    (taps - 1) / 2)."""
    offsets = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).float()


def gaussian_smooth(maps: torch.Tensor, taps: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of (N, S, S) maps with zero padding; ``taps`` 1 returns them unchanged.

    Equals ``scipy.ndimage.gaussian_filter(map, sigma, mode="constant", truncate=((taps - 1) / 2) / sigma)``.
    """
    if taps == 1:
        return maps
    kernel = gaussian_kernel(taps, sigma).to(maps)
    pad = (taps - 1) // 2
    smoothed = F.conv2d(maps[:, None], kernel.view(1, 1, taps, 1), padding=(pad, 0))
    return F.conv2d(smoothed, kernel.view(1, 1, 1, taps), padding=(0, pad))[:, 0]


@dataclass(frozen=True)
class GradientOptions:
    """How input gradients are taken: ``runs`` noisy copies with noise std ``noise`` (SmoothGrad), or runs 1 and
    noise 0 (vanilla); the result is Gaussian-smoothed with ``taps`` and ``sigma`` (model pixels)."""

    runs: int = 20
    noise: float = 0.1
    taps: int = 5
    sigma: float = 1.1


class VAEScores:
    """The scores of a trained network.

    Args:
        network: a variational ``ConvAutoencoder`` (eval mode).
        likelihood, scale: p(x|z) as trained.
    """

    def __init__(self, network: ConvAutoencoder, likelihood: Likelihood, scale: float):
        self.network, self.likelihood, self.scale = network, likelihood, scale

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """g(f_mu(x)), the posterior-mean reconstruction: (N, 1, S, S) float32."""
        return self.network.decode(self.network.encode(x)[0]).float()

    def terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_KL, L_rec) per sample, (N,) nats each; x (N, 1, S, S); L_rec with the posterior mean."""
        mean, log_sigma = self.network.encode(x)
        reconstruction = self.network.decode(mean)
        return kl_divergence(mean, log_sigma), reconstruction_nll(x, reconstruction, self.likelihood, self.scale)

    def input_gradients(self, x: torch.Tensor, runs: int, noise: float,
                        generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(d L_KL / dx, d L_rec / dx), signed, (N, S, S) each, averaged over ``runs`` copies of x with Gaussian
        noise of std ``noise`` added (SmoothGrad; runs 1, noise 0: the vanilla gradient at x).

        The copies go through the network as one batch (run-major): each copy's loss depends on it alone, so the
        gradient of the summed losses holds every copy's own gradient. The noise is drawn as one (runs, N, 1, S, S)
        tensor from ``generator``.
        """
        copies = x.expand(runs, *x.shape)
        if noise > 0:
            copies = copies + noise * torch.randn(copies.shape, generator=generator, device=x.device, dtype=x.dtype)
        copies = copies.reshape(runs * len(x), *x.shape[1:]).detach().requires_grad_(True)
        with torch.enable_grad():
            kl, rec = self.terms(copies)
            (kl_gradient,) = torch.autograd.grad(kl.sum(), copies, retain_graph=True)
            (rec_gradient,) = torch.autograd.grad(rec.sum(), copies)
        shape = (runs, len(x), *x.shape[2:])
        return kl_gradient.reshape(shape).mean(dim=0), rec_gradient.reshape(shape).mean(dim=0)

    @torch.no_grad()
    def maps(self, x: torch.Tensor, names: Iterable[str], options: GradientOptions, n_samples: int = 16,
             seed: int = 0) -> dict[str, torch.Tensor]:  # fmt: skip
        """The pixel scores ``names`` of x (N, 1, S, S): {name: (N, S, S) float32}."""
        names = tuple(names)
        out: dict[str, torch.Tensor] = {}
        mean, log_sigma = self.network.encode(x)
        error = (x - self.network.decode(mean)).abs()[:, 0]
        if "rec" in names or "combi" in names:
            out["rec"] = error
        if "rec-smoothed" in names:
            out["rec-smoothed"] = gaussian_smooth(error, options.taps, options.sigma)
        if {"kl-grad", "rec-grad", "elbo-grad", "combi"} & set(names):
            generator = torch.Generator(x.device).manual_seed(seed)
            kl_gradient, rec_gradient = self.input_gradients(x, options.runs, options.noise, generator)
            for name, gradient in (("kl-grad", kl_gradient), ("rec-grad", rec_gradient),
                                   ("elbo-grad", kl_gradient + rec_gradient)):  # fmt: skip
                out[name] = gaussian_smooth(gradient.abs(), options.taps, options.sigma)
            out["combi"] = error * out["kl-grad"]
        if "sampling-variance" in names:
            generator = torch.Generator(x.device).manual_seed(seed + SAMPLING_STREAM)
            codes = mean + log_sigma.exp() * torch.randn((n_samples, *mean.shape), generator=generator, device=x.device)
            decodes = self.network.decode(codes.reshape(-1, mean.shape[1])).reshape(n_samples, len(x), *x.shape[2:])
            out["sampling-variance"] = decodes.var(dim=0, unbiased=False)
        return {name: out[name].float() for name in names}


class ReconstructionScores:
    """The reconstruction scores of a deterministic autoencoder (the DAE): ``rec`` and ``rec-smoothed``."""

    def __init__(self, network: ConvAutoencoder, likelihood: Likelihood, scale: float):
        self.network, self.likelihood, self.scale = network, likelihood, scale

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """g(f(x)): (N, 1, S, S) float32."""
        return self.network.decode(self.network.encode(x)[0]).float()

    @torch.no_grad()
    def terms(self, x: torch.Tensor) -> tuple[None, torch.Tensor]:
        """(None, L_rec per sample (N,) nats)."""
        reconstruction = self.network.decode(self.network.encode(x)[0])
        return None, reconstruction_nll(x, reconstruction, self.likelihood, self.scale)

    @torch.no_grad()
    def maps(self, x: torch.Tensor, names: Iterable[str], options: GradientOptions, n_samples: int = 0,
             seed: int = 0) -> dict[str, torch.Tensor]:  # fmt: skip
        error = (x - self.network.decode(self.network.encode(x)[0])).abs()[:, 0]
        out = {"rec": error}
        if "rec-smoothed" in names:
            out["rec-smoothed"] = gaussian_smooth(error, options.taps, options.sigma)
        return {name: out[name].float() for name in names}
