"""Blocks of Davletshina et al.'s GANs that no other family uses: minibatch discrimination (Salimans et al. 2016)
and SAGAN self-attention (Zhang et al. 2019, the paper's "†" layers)."""

from __future__ import annotations

import torch
from torch import nn


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination: features (N, A) -> (N, A + kernels), the input with, per kernel b, how close each
    sample lies to the others, o_b(x_i) = sum over j != i of exp(-||M_ib - M_jb||_1), M = features @ T reshaped to
    (N, kernels, kernel_dim).

    A batch of identical samples gets o_b = N - 1 (collapse is visible to the discriminator); diverse samples get
    values near 0. ``reference`` (R, A), other samples' features, replaces the batch's own (scoring one image):
    o_b(x_i) = scale * sum over r of exp(-||M_ib - M_rb||_1).
    """

    def __init__(self, in_features: int, kernels: int = 16, kernel_dim: int = 16):
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, kernels * kernel_dim) * 0.1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """M: (N, kernels, kernel_dim)."""
        return (features @ self.T).view(-1, self.kernels, self.kernel_dim)

    def forward(self, features: torch.Tensor, reference: torch.Tensor | None = None,
                scale: float = 1.0) -> torch.Tensor:  # fmt: skip
        m = self.project(features)
        if reference is None:
            distances = (m[:, None] - m[None]).abs().sum(-1)  # (N, N, kernels)
            others = 1.0 - torch.eye(len(m), device=m.device, dtype=m.dtype)[:, :, None]  # j != i
            closeness = (torch.exp(-distances) * others).sum(1)
        else:
            distances = (m[:, None] - self.project(reference)[None]).abs().sum(-1)  # (N, R, kernels)
            closeness = scale * torch.exp(-distances).sum(1)
        return torch.cat([features, closeness], dim=1)


class SelfAttention(nn.Module):
    """SAGAN self-attention over positions, (N, C, H, W) -> same: x + gamma * attention(x), gamma starting at 0."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(channels // 8, 1)
        self.query, self.key = nn.Conv2d(channels, inner, 1), nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        query = self.query(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        key = self.key(x).flatten(2)  # (N, C', HW)
        attention = torch.softmax(query @ key, dim=-1)  # (N, HW, HW)
        out = (self.value(x).flatten(2) @ attention.transpose(1, 2)).view(n, c, h, w)
        return x + self.gamma * out
