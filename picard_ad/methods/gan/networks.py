"""The networks of Davletshina et al.'s (2020) GANs (appendix tables "DCGAN", "BiGAN", "α-GAN"), pure modules.

Every network is a stack of 4x4 convolutions, stride 2 and padding 1 (transposed in generators), between the image
side S and 4 x 4, with a 4x4 convolution without padding between 4 x 4 and 1 x 1; channels double per halving.
``width`` is the channels next to the image: the paper's DCGAN has width 4 in the discriminator (256 x 256 x 4 ...
4 x 4 x 256, then 1 x 1 x 512) and 16 in the generator (4 x 4 x 1024 ... 256 x 256 x 16, then 512 x 512 x 1); its
BiGAN and α-GAN have width 64 at 128 px (64 x 64 x 64 ... 4 x 4 x 1024). Images are in [-1, 1] (generators end in
tanh); codes z ~ N(0, I) of ``z_dim``.

Chosen where the tables are silent: LeakyReLU(0.2) in discriminators and encoders, ReLU in generators; spectral
normalisation on every discriminator layer but the minibatch tensor (the paper names it for the DCGAN; SAGAN's
recipe of hinge loss, spectral norm and self-attention for the others); batch norm in the BiGAN / α-GAN generators
and encoders (none in the DCGAN: "No Batch Normalization"); self-attention (†) after the encoder blocks ending at
8 x 8 and 4 x 4 and the α-GAN discriminator block ending at 8 x 8; the code discriminator's hidden sizes 100, 100, 25
(our reading of the garbled table).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from picard_ad.methods.gan.layers import MinibatchDiscrimination, SelfAttention


def levels_of(input_size: int) -> int:
    """Stride-2 steps between the image side and 4 x 4; the side must be a power of two >= 8."""
    levels = int(round(math.log2(input_size))) - 2
    if levels < 1 or 4 * 2**levels != input_size:
        raise ValueError(f"the GANs need an input side that is a power of two >= 8, got {input_size}")
    return levels


def top_channels(input_size: int, width: int) -> int:
    """Channels at 4 x 4 of a stack of ``width`` channels next to the image."""
    return width * 2 ** (levels_of(input_size) - 1)


def _maybe_sn(layer: nn.Module, spectral: bool) -> nn.Module:
    return spectral_norm(layer) if spectral else layer


class Generator(nn.Module):
    """G: codes (N, z_dim) -> images (N, 1, S, S) in [-1, 1] (tanh)."""

    def __init__(self, z_dim: int, input_size: int, width: int, batch_norm: bool):
        super().__init__()
        self.z_dim = z_dim
        channels = top_channels(input_size, width)
        layers: list[nn.Module] = []

        def block(cin: int, cout: int, stride: int, padding: int) -> None:
            layers.append(nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))

        block(z_dim, channels, 1, 0)  # 1 x 1 -> 4 x 4
        for _ in range(levels_of(input_size) - 1):
            block(channels, channels // 2, 2, 1)
            channels //= 2
        layers += [nn.ConvTranspose2d(channels, 1, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


def _trunk(input_size: int, width: int, *, spectral: bool, batch_norm: bool, attention_sides: tuple[int, ...]
           ) -> tuple[nn.Sequential, int]:  # fmt: skip
    """4x4 stride-2 convs from (N, 1, S, S) to (N, C, 4, 4), LeakyReLU(0.2); returns (stack, C)."""
    layers: list[nn.Module] = []
    cin, cout, side = 1, width, input_size
    for level in range(levels_of(input_size)):
        norm = batch_norm and level > 0
        layers.append(_maybe_sn(nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm), spectral))
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        side //= 2
        if side in attention_sides:
            layers.append(SelfAttention(cout))
        cin, cout = cout, cout * 2
    return nn.Sequential(*layers), cin


class ImageDiscriminator(nn.Module):
    """D: images (N, 1, S, S) in [-1, 1] -> logits (N,), real > fake.

    The 4 x 4 x C stack, a 4x4 convolution to ``features`` channels at 1 x 1 (the feature vector AnoGAN's feature
    loss compares), optionally minibatch discrimination (``minibatch_kernels`` > 0), a linear layer to one logit.
    ``reference`` (a buffer saved with the weights, R real training images of the last step) stands in for the
    batch when one image is scored alone, its closeness scaled by (batch_size - 1) / R as in training.
    """

    def __init__(self, input_size: int, width: int, features: int, *, minibatch_kernels: int = 0,
                 kernel_dim: int = 16, batch_size: int = 16, attention_sides: tuple[int, ...] = ()):  # fmt: skip
        super().__init__()
        self.trunk, channels = _trunk(input_size, width, spectral=True, batch_norm=False,
                                      attention_sides=attention_sides)  # fmt: skip
        self.to_features = nn.Sequential(spectral_norm(nn.Conv2d(channels, features, 4, 1, 0)),
                                         nn.LeakyReLU(0.2, inplace=True), nn.Flatten())  # fmt: skip
        self.minibatch = MinibatchDiscrimination(features, minibatch_kernels, kernel_dim) if minibatch_kernels else None
        self.head = spectral_norm(nn.Linear(features + minibatch_kernels, 1))
        references = min(max(batch_size - 1, 1), 32)
        self.scale = max(batch_size - 1, 1) / references
        self.register_buffer("reference", torch.zeros(references, 1, input_size, input_size))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, features) vector before minibatch discrimination."""
        return self.to_features(self.trunk(images))

    @torch.no_grad()
    def remember(self, real: torch.Tensor) -> None:
        """Keep the first R images of a real batch as the reference for scoring single images."""
        count = min(len(real), len(self.reference))
        self.reference[:count] = real[:count].detach().to(self.reference.dtype)

    def forward(self, images: torch.Tensor, against_reference: bool = False) -> torch.Tensor:
        features = self.features(images)
        if self.minibatch is not None:
            reference = self.features(self.reference) if against_reference else None
            features = self.minibatch(features, reference, self.scale)
        return self.head(features)[:, 0]


class Encoder(nn.Module):
    """E: images (N, 1, S, S) in [-1, 1] -> (mean, log variance) (N, z_dim) each; the table's last 4x4 conv gives
    1 x 1 x 2 z_dim ("mean and variance")."""

    def __init__(self, input_size: int, width: int, z_dim: int, attention_sides: tuple[int, ...] = ()):
        super().__init__()
        self.trunk, channels = _trunk(input_size, width, spectral=False, batch_norm=True,
                                      attention_sides=attention_sides)  # fmt: skip
        self.head = nn.Conv2d(channels, 2 * z_dim, 4, 1, 0)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_variance = self.head(self.trunk(images)).flatten(1).chunk(2, dim=1)
        return mean, log_variance


class JointDiscriminator(nn.Module):
    """BiGAN's D: (images (N, 1, S, S), codes (N, z_dim)) -> logits (N,). Image branch: the 4 x 4 x C stack and a
    4x4 convolution to C at 1 x 1; code branch: two layers of C / 2 (1x1 convs on a 1 x 1 code = linear layers);
    combination: the branches stacked, two layers of C, one logit (paper: C = 1024)."""

    def __init__(self, input_size: int, width: int, z_dim: int):
        super().__init__()
        self.trunk, channels = _trunk(input_size, width, spectral=True, batch_norm=False, attention_sides=())
        act = nn.LeakyReLU(0.2, inplace=True)
        self.image_branch = nn.Sequential(spectral_norm(nn.Conv2d(channels, channels, 4, 1, 0)), act, nn.Flatten())
        half = channels // 2
        self.code_branch = nn.Sequential(spectral_norm(nn.Linear(z_dim, half)), act,
                                         spectral_norm(nn.Linear(half, half)), act)  # fmt: skip
        self.combination = nn.Sequential(spectral_norm(nn.Linear(channels + half, channels)), act,
                                         spectral_norm(nn.Linear(channels, channels)), act,
                                         spectral_norm(nn.Linear(channels, 1)))  # fmt: skip

    def forward(self, images: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([self.image_branch(self.trunk(images)), self.code_branch(codes)], dim=1)
        return self.combination(joint)[:, 0]


class CodeDiscriminator(nn.Module):
    """α-GAN's code discriminator C: codes (N, z_dim) -> logits (N,), prior samples > encodings."""

    def __init__(self, z_dim: int, hidden: tuple[int, ...] = (100, 100, 25)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = z_dim
        for cout in hidden:
            layers += [spectral_norm(nn.Linear(cin, cout)), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        layers.append(spectral_norm(nn.Linear(cin, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(codes)[:, 0]
