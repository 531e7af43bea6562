"""The convolutional autoencoder of Davletshina et al. (2020, appendix table "CAE"), a pure ``nn.Module``.

The paper's table at 512 px: encoder 3x3 conv to 16 channels, then four times (4x4 conv, stride 2, doubling the
channels; 3x3 conv), then a last 4x4 stride-2 conv to the 16 x 16 x 512 bottleneck; decoder five 4x4 transposed
convs, stride 2, halving the channels back to 16 at 512 px, then a 3x3 conv to one channel. Batch normalisation
sits between every convolution and its ReLU (section 2.3). ``width`` (first channels) and ``levels`` (stride-2
steps) generalise it to other input sizes: the paper's is ``width=16, levels=5``.

What the paper leaves open, chosen here: padding 1 everywhere (3x3 keeps the size, 4x4 stride 2 halves or
doubles it exactly), no bias before batch normalisation, the bottleneck block with batch norm and ReLU like the
others, and a sigmoid after the last conv (inputs and targets are intensities in [0, 1]).
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _up(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, 2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvAutoencoder(nn.Module):
    """Fully convolutional autoencoder: (N, 1, S, S) in [0, 1] -> (N, 1, S, S) reconstruction in [0, 1].

    Args:
        width: channels of the first conv (the paper's 16); each stride-2 step doubles them.
        levels: stride-2 steps down to the bottleneck (the paper's 5); S must be a multiple of 2**levels.
    """

    def __init__(self, width: int = 16, levels: int = 5):
        super().__init__()
        self.width, self.levels = width, levels
        encoder = [_conv(1, width, 3, 1)]
        channels = width
        for _ in range(levels - 1):
            encoder += [_conv(channels, 2 * channels, 4, 2), _conv(2 * channels, 2 * channels, 3, 1)]
            channels *= 2
        encoder.append(_conv(channels, 2 * channels, 4, 2))
        channels *= 2
        self.encoder = nn.Sequential(*encoder)
        decoder = []
        for _ in range(levels):
            decoder.append(_up(channels, channels // 2))
            channels //= 2
        decoder.append(nn.Conv2d(channels, 1, 3, 1, padding=1))
        self.decoder = nn.Sequential(*decoder)

    @property
    def bottleneck_channels(self) -> int:
        return self.width * 2**self.levels

    def bottleneck_shape(self, input_size: int) -> tuple[int, int, int]:
        """(height, width, channels) of the code of an ``input_size`` square input."""
        side = input_size // 2**self.levels
        return side, side, self.bottleneck_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(images)))
