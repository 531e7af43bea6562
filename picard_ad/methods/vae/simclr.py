"""CRADL's first stage: a SimCLR encoder (Chen et al. 2020) of whole slices, its projection head, NT-Xent and the
views it compares (Zimmerer's thesis, section 3.2.3).

The thesis gives a 2-D convolutional encoder with 64 feature maps in its first layer and a 512-d representation,
a projection head of two linear layers with a ReLU (512 hidden, 256 out), NT-Xent at temperature 0.5 over both
orderings of every pair with the other 2N - 2 views as negatives, and crop, scale, mirror, rotation, brightness and
noise augmentation. It names no layer count: here four 4 x 4 stride-2 convolutions with ``width`` x (1, 2, 4, 8)
maps and LeakyReLU(0.2) (the VAE's levels), then a global average pool: ``width`` 64 gives the thesis' 64 first
maps and 512-d representation. No normalisation layers, so the representation of one slice does not depend on its
batch. Pure ``nn.Module``s and functions: no training logic.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from picard_ad.methods.vae.data import Augmentation, Preprocessing, Statistics, augmented

LEVELS = (1, 2, 4, 8)
"""Feature maps of the encoder's four strided levels, in multiples of ``width``."""


class SimCLREncoder(nn.Module):
    """Images (N, 1, S, S) -> representations (N, 8 width). S: any multiple of 16."""

    def __init__(self, width: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for factor in LEVELS:
            layers += [nn.Conv2d(channels, width * factor, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = width * factor
        self.layers = nn.Sequential(*layers)
        self.representation_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean(dim=(2, 3))


class ProjectionHead(nn.Module):
    """Representations (N, D) -> projections (N, out): Linear, ReLU, Linear (the thesis: 512 hidden, 256 out)."""

    def __init__(self, in_features: int, hidden: int = 512, out: int = 256):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.layers(h)


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent of N pairs of projections, (N, d) each -> scalar: the mean over the 2N views of
    -log(exp(sim(i, j) / t) / sum_{k != i} exp(sim(i, k) / t)), sim the cosine similarity, j the view paired
    with i; both orderings of every pair count, and the other 2N - 2 views are the negatives."""
    views = F.normalize(torch.cat([first, second]).float(), dim=1)
    logits = views @ views.T / temperature
    logits = logits.masked_fill(torch.eye(len(views), dtype=torch.bool, device=views.device), float("-inf"))
    n = len(first)
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(views.device)
    return F.cross_entropy(logits, partners)


def random_crop(image: np.ndarray, rng: np.random.Generator, min_scale: float) -> np.ndarray:
    """A square crop of a side uniform in [min_scale, 1] of the image's at a uniform position, resized back to
    (S, S) (bilinear): SimCLR's crop and scale. image: (S, S) float32 in [0, 1]."""
    size = image.shape[0]
    side = max(2, int(round(size * rng.uniform(min_scale, 1.0))))
    if side >= size:
        return image
    top, left = rng.integers(0, size - side + 1, size=2)
    crop = torch.from_numpy(np.ascontiguousarray(image[top : top + side, left : left + side]))[None, None]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def two_views(image: np.ndarray, rng: np.random.Generator, augmentation: Augmentation, preprocessing: Preprocessing,
              min_crop_scale: float,
              statistics: Statistics | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Two independently augmented network inputs (S, S) float32 of one resized [0, 1] slice: crop and scale, then
    the VAE's mirroring, rotation, brightness and noise (``data.augmented``), z-scored (by its volume's
    ``statistics`` where given) and clipped."""
    return tuple(augmented(random_crop(image, rng, min_crop_scale), rng, augmentation, preprocessing,
                           statistics=statistics) for _ in range(2))  # fmt: skip
