"""PICARD's WGAN critics; the local critic's last feature map is the completion encoder phi (8,192 values)."""

from __future__ import annotations

import torch
from torch import nn

from picard_ad.errors import ConfigError
from picard_ad.layers import ConvBlock

DOWNSAMPLING = 16
"""The four stride-2 convolutions shrink the input 16-fold; the input size must be a multiple of this."""


class CriticConvStack(nn.Module):
    """Four 5x5 stride-2 convolutions with LeakyReLU(0.2): C -> cnum -> 2 cnum -> 4 cnum -> 4 cnum channels."""

    def __init__(self, in_channels: int, cnum: int):
        super().__init__()
        widths = (in_channels, cnum, 2 * cnum, 4 * cnum, 4 * cnum)
        for index in range(4):
            block = ConvBlock(widths[index], widths[index + 1], 5, stride=2, padding=2, activation="lrelu")
            block.layer_name = f"dis_conv_module.conv{index + 1}"
            self.add_module(f"conv{index + 1}", block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, S, S) -> (N, 4 cnum, S / 16, S / 16)."""
        for block in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = block(x)
        return x


class Critic(nn.Module):
    """A WGAN critic: the conv stack, flattened, then one linear score.

    in_channels: image channels. cnum: base width (32). input_size: side of the square input in pixels.
    """

    def __init__(self, in_channels: int = 1, cnum: int = 32, input_size: int = 128):
        super().__init__()
        if in_channels < 1 or cnum < 1 or input_size < DOWNSAMPLING or input_size % DOWNSAMPLING:
            raise ConfigError(
                f"critic needs in_channels >= 1, cnum >= 1 and an input size that is a positive multiple of "
                f"{DOWNSAMPLING}, got {in_channels}, {cnum} and {input_size}"
            )
        self.in_channels = in_channels
        self.cnum = cnum
        self.input_size = input_size
        self.dis_conv_module = CriticConvStack(in_channels, cnum)
        self.linear = nn.Linear(self.feature_dim, 1)

    @property
    def feature_dim(self) -> int:
        """Length of the feature vector phi: 4 cnum (input_size / 16)^2 (8,192 for cnum 32, input 128)."""
        return 4 * self.cnum * (self.input_size // DOWNSAMPLING) ** 2

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi: the flattened output of the 4th LeakyReLU. x: (N, C, S, S) in [-1, 1] -> (N, feature_dim)."""
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"critic input must be (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        return torch.flatten(self.dis_conv_module(x), start_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Critic score. x: (N, C, S, S) in [-1, 1] -> (N, 1), unbounded (higher means more real)."""
        return self.linear(self.features(x))


class LocalCritic(Critic):
    """The critic of the completed hole region (128 x 128 in PICARD); its features are PICARD's encoder phi."""

    def __init__(self, in_channels: int = 1, cnum: int = 32, input_size: int = 128):
        super().__init__(in_channels, cnum, input_size)


class GlobalCritic(Critic):
    """The critic of the whole completed patch (256 x 256 in PICARD)."""

    def __init__(self, in_channels: int = 1, cnum: int = 32, input_size: int = 256):
        super().__init__(in_channels, cnum, input_size)
