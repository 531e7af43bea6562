"""Losses of the PICARD completion network (Yu et al. 2018 as used by Konz et al. 2023), all in fp32.

Images are (N, C, H, W) in [-1, 1]; masks (N, 1, H, W) are 1 in the hole. ``bbox`` is the un-shrunk hole box
(top, left, height, width) shared by the batch, the region the local critic sees.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

BBox = tuple[int, int, int, int]


def spatial_discount_mask(height: int, width: int, gamma: float = 0.9) -> torch.Tensor:
    """(1, 1, height, width) weights gamma**d, d = distance in px to the nearest edge of the box.

    Every edge pixel weighs 1 and the weight falls by gamma per pixel inwards. The reference computes
    ``max(gamma**min(i, h - i), gamma**min(j, w - j))``, whose last row and column weigh gamma instead of 1 (an
    off-by-one); here the box is symmetric.
    """
    rows = torch.arange(height, dtype=torch.float64)
    cols = torch.arange(width, dtype=torch.float64)
    to_row_edge = torch.minimum(rows, height - 1 - rows)
    to_col_edge = torch.minimum(cols, width - 1 - cols)
    distance = torch.minimum(to_row_edge[:, None], to_col_edge[None, :])
    return (gamma**distance).float()[None, None]


def crop_bbox(images: torch.Tensor, bbox: BBox) -> torch.Tensor:
    """The (N, C, h, w) region of ``bbox`` = (top, left, h, w)."""
    top, left, height, width = bbox
    return images[:, :, top : top + height, left : left + width]


def composite(completion: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The completion inside the hole, the known image outside it."""
    return completion * mask + truth * (1 - mask)


def discounted_hole_l1(
    stage1: torch.Tensor,
    stage2: torch.Tensor,
    truth: torch.Tensor,
    mask: torch.Tensor,
    bbox: BBox,
    discount: torch.Tensor,
    coarse_weight: float,
) -> torch.Tensor:
    """coarse_weight * L1(stage-1 composite) + L1(stage-2 composite) on the bbox, weighted by ``discount``.

    Each L1 is the mean absolute difference over every pixel of the (N, C, h, w) local patches.
    """
    local_truth = crop_bbox(truth, bbox) * discount
    loss = 0.0
    for weight, stage in ((coarse_weight, stage1), (1.0, stage2)):
        local = crop_bbox(composite(stage, truth, mask), bbox) * discount
        loss = loss + weight * F.l1_loss(local, local_truth)
    return loss


def known_region_l1(
    stage1: torch.Tensor, stage2: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor, coarse_weight: float
) -> torch.Tensor:
    """Autoencoder term: coarse_weight * L1 + L1 of the raw outputs on the known pixels, averaged over all pixels."""
    known = 1 - mask
    return coarse_weight * F.l1_loss(stage1 * known, truth * known) + F.l1_loss(stage2 * known, truth * known)


def critic_wasserstein_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """mean(D(fake)) - mean(D(real)): the critic minimises it."""
    return fake_scores.float().mean() - real_scores.float().mean()


def generator_adversarial_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """-mean(D(fake)): the generator minimises it."""
    return -fake_scores.float().mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP term mean((||grad_x D(x_hat)||_2 - 1)^2), x_hat = alpha * real + (1 - alpha) * fake.

    Args:
        critic: maps (N, C, h, w) images to (N,) or (N, 1) scores.
        real, fake: (N, C, h, w); ``fake`` should be detached from the generator.
        alpha: (N,) interpolation weights; drawn from U(0, 1) per sample (global torch RNG) when None.
    The norm is over each sample's flattened input gradient and is computed in fp32; the graph is kept so the
    penalty can be backpropagated into the critic.
    """
    real = real.float()
    fake = fake.float()
    if alpha is None:
        alpha = torch.rand(real.shape[0], device=real.device)
    alpha = alpha.to(real).view(-1, *([1] * (real.dim() - 1)))
    interpolated = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(interpolated)
    (gradients,) = torch.autograd.grad(scores.float().sum(), interpolated, create_graph=True)
    norms = gradients.float().flatten(1).norm(2, dim=1)
    return ((norms - 1) ** 2).mean()
