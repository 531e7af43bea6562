"""The GANs' anomaly scores: the discriminator's probability and AnoGAN's latent search (Schlegl et al. 2017).

Discriminator probability (Davletshina et al. use "the discriminator's output as the anomaly score"): 1 - D(x),
D's probability that the image is fake, so higher is more anomalous. It is one number per image; as a pixel map we
give that number on every pixel of the mask, which localizes nothing (the paper says so too: GANs give image
scores only).

AnoGAN: starting from a fixed z0, Adam steps on z minimise A(z) = (1 - lambda) R(z) + lambda F(z), the residual
R(z) = sum over the mask of |x - G(z)| (intensities in [0, 1]) and the feature loss F(z) = sum |f(x) - f(G(z))|,
f the discriminator's feature vector before minibatch discrimination (Schlegl et al.'s "intermediate layer"; their
lambda 0.1 and 500 steps are the defaults). The image score is A(z*) at the last z, the pixel map |x - G(z*)|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def disc_score(logits: torch.Tensor) -> torch.Tensor:
    """1 - sigmoid(logits): the discriminator's probability of fake."""
    return 1 - torch.sigmoid(logits)


@dataclass(frozen=True)
class LatentSearch:
    """The result of AnoGAN's latent search for one image.

    z: (z_dim,) float32, the last code; residual_map: (S, S) float32 |x - G(z)| in [0, 1] units, 0 off the mask;
    residual, feature_loss: R(z) and F(z); score: (1 - lambda) R + lambda F; start_residual: R(z0).
    """

    z: np.ndarray
    residual_map: np.ndarray
    residual: float
    feature_loss: float
    score: float
    start_residual: float


def anogan_terms(generator: nn.Module, discriminator: nn.Module, image: torch.Tensor, mask: torch.Tensor,
                 z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(R, F, |x - G(z)| masked) of a code z (1, z_dim); image (1, 1, S, S) in [-1, 1], mask (1, 1, S, S) 0/1;
    ``discriminator.features`` maps images to D's (1, features) vector."""
    generated = generator(z)
    residual_map = ((image - generated).abs() / 2) * mask  # [-1, 1] difference halved: [0, 1] units
    feature_loss = (discriminator.features(image) - discriminator.features(generated)).abs().sum()
    return residual_map.sum(), feature_loss, residual_map


def latent_search(generator: nn.Module, discriminator: nn.Module, image: torch.Tensor, mask: torch.Tensor, *,
                  iterations: int, lr: float, lam: float, seed: int) -> LatentSearch:  # fmt: skip
    """AnoGAN's search for z* of one image (networks in eval mode, their weights untouched).

    image: (1, 1, S, S) float32 in [-1, 1]; mask: (1, 1, S, S) 0/1; z0 ~ N(0, I) from ``seed``.
    """
    z_dim = generator.z_dim
    start = np.random.default_rng(seed).standard_normal((1, z_dim), dtype=np.float32)
    z = torch.from_numpy(start).to(image.device).requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    params = [p for module in (generator, discriminator) for p in module.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            start_residual = float(anogan_terms(generator, discriminator, image, mask, z)[0])
        with torch.enable_grad():  # scoring may run under no_grad
            for _ in range(iterations):
                residual, feature_loss, _ = anogan_terms(generator, discriminator, image, mask, z)
                loss = (1 - lam) * residual + lam * feature_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            residual, feature_loss, residual_map = anogan_terms(generator, discriminator, image, mask, z)
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
    return LatentSearch(
        z=z.detach()[0].cpu().numpy(),
        residual_map=residual_map[0, 0].cpu().numpy().astype(np.float32),
        residual=float(residual),
        feature_loss=float(feature_loss),
        score=float((1 - lam) * residual + lam * feature_loss),
        start_residual=start_residual,
    )
