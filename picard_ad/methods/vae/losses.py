"""The terms of the VAE loss L = L_KL + L_rec (thesis eq. 3.4), per image, in nats.

L_KL is the closed-form KL(q(z|x) || N(0, I)) of a diagonal Gaussian posterior. L_rec is -log p(x|z) summed
(not averaged) over the pixels, as the thesis writes it: p(x|z) = N(g(z), c^2) per pixel (an L2 loss weighted by
1 / 2c^2) or Laplace(g(z), c) (an L1 loss weighted by 1 / c), with c the ``scale`` setting (the thesis' "standard
deviation c of p(x|z)", default 1). Intensities are in the networks' units (z-scores inside the tissue).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Likelihood = Literal["gaussian", "laplace"]


def kl_divergence(mean: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, sigma^2) || N(0, I)) per sample: (N, z) each -> (N,) nats."""
    return 0.5 * (mean.square() + (2 * log_sigma).exp() - 1.0 - 2 * log_sigma).sum(dim=1)


def pixel_nll(x: torch.Tensor, reconstruction: torch.Tensor, likelihood: Likelihood, scale: float) -> torch.Tensor:
    """-log p(x | z) of every pixel, nats: x and reconstruction (N, 1, S, S) -> (N, 1, S, S).

    gaussian: (x - g)^2 / (2 c^2) + log c + log(2 pi) / 2; laplace: |x - g| / c + log(2 c).
    """
    if likelihood == "gaussian":
        return (x - reconstruction).square() / (2 * scale * scale) + math.log(scale) + 0.5 * math.log(2 * math.pi)
    if likelihood == "laplace":
        return (x - reconstruction).abs() / scale + math.log(2 * scale)
    raise ValueError(f"likelihood must be 'gaussian' or 'laplace', got {likelihood!r}")


def reconstruction_nll(x: torch.Tensor, reconstruction: torch.Tensor, likelihood: Likelihood,
                       scale: float) -> torch.Tensor:  # fmt: skip
    """L_rec per sample: ``pixel_nll`` summed over the pixels, (N,) nats."""
    return pixel_nll(x, reconstruction, likelihood, scale).flatten(1).sum(dim=1)


def cevae_loss_terms(network: torch.nn.Module, x: torch.Tensor, masked: torch.Tensor, noise: torch.Tensor,
                     likelihood: Likelihood, scale: float, ce_factor: float) -> dict[str, torch.Tensor]:  # fmt: skip
    """The ceVAE's loss L_KL + L_rec + ce_factor * L_CE and its terms per sample, (N,) float32 nats each.

    L_KL and L_rec are the VAE's (z = mean + sigma * noise); L_CE is L_rec of the clean x reconstructed from the
    masked copy through the mean encoder alone, g(f_mu(masked)), with no KL on the masked copy (thesis section
    3.2.3: perturbed inputs are not pulled towards the prior).

    network: a variational ``ConvAutoencoder``; x, masked: (N, 1, S, S); noise: (N, z) standard normal.
    """
    mean, log_sigma = network.encode(x)
    mean, log_sigma = mean.float(), log_sigma.float()
    reconstruction = network.decode(mean + log_sigma.exp() * noise).float()
    context_reconstruction = network.decode(network.encode(masked)[0]).float()
    x = x.float()
    kl = kl_divergence(mean, log_sigma)
    rec = reconstruction_nll(x, reconstruction, likelihood, scale)
    ce = reconstruction_nll(x, context_reconstruction, likelihood, scale)
    return {"loss": kl + rec + ce_factor * ce, "kl": kl, "rec": rec, "ce": ce}
