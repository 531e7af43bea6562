"""The thesis' DCGAN-like convolutional autoencoder (Zimmerer, section 3.1.4), as a VAE or a plain (denoising) AE.

Encoder: four 4 x 4 convolutions of stride 2 (padding 1) with 16, 32, 64 and 256 feature maps, each followed by a
LeakyReLU(0.2), then a fifth convolution whose kernel covers the remaining map (4 x 4 at 64 px, 8 x 8 at 128 px)
down to 1 x 1: 2 z channels split into the mean and log standard deviation heads (the encoders f_mu and f_sigma
share every layer but this one's outputs, as in the thesis), or z channels for the autoencoder. The decoder
mirrors it with transposed convolutions (256, 64, 32, 16 maps, LeakyReLU) and a linear 1-channel output. No
normalisation layers (the reference code has none; the thesis names none). Pure ``nn.Module``s: no training logic.
"""

from __future__ import annotations

import torch
from torch import nn

FEATURE_MAPS = (16, 32, 64, 256)
"""The thesis' feature maps of the four strided levels (16-32-64-256)."""
DOWNSAMPLING = 2 ** len(FEATURE_MAPS)
"""How much the strided levels shrink the input: the input side must be a multiple of it."""


def _check_input_size(input_size: int) -> int:
    if input_size < DOWNSAMPLING or input_size % DOWNSAMPLING:
        raise ValueError(f"input_size must be a positive multiple of {DOWNSAMPLING}, got {input_size}")
    return input_size // DOWNSAMPLING


class ConvEncoder(nn.Module):
    """Image (N, 1, S, S) -> (N, out_channels) codes; S a multiple of 16.

    Args:
        input_size: S, the image side, px.
        out_channels: 2 z for a VAE (mean and log sigma), z for an autoencoder.
        feature_maps: channels of the four strided levels.
    """

    def __init__(self, input_size: int, out_channels: int, feature_maps: tuple[int, ...] = FEATURE_MAPS):
        super().__init__()
        last_side = _check_input_size(input_size)
        layers: list[nn.Module] = []
        channels = 1
        for maps in feature_maps:
            layers += [nn.Conv2d(channels, maps, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = maps
        layers.append(nn.Conv2d(channels, out_channels, last_side))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten(1)


class ConvDecoder(nn.Module):
    """Codes (N, z) -> images (N, 1, S, S), the encoder's mirror image with a linear output."""

    def __init__(self, input_size: int, z_dim: int, feature_maps: tuple[int, ...] = FEATURE_MAPS):
        super().__init__()
        first_side = _check_input_size(input_size)
        maps = tuple(reversed(feature_maps))
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, maps[0], first_side), nn.LeakyReLU(0.2)]
        for channels, following in zip(maps, maps[1:] + (1,)):
            layers.append(nn.ConvTranspose2d(channels, following, 4, stride=2, padding=1))
            if following != 1:
                layers.append(nn.LeakyReLU(0.2))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z[:, :, None, None])


class ConvAutoencoder(nn.Module):
    """Encoder and decoder; ``variational`` splits the code into q(z|x)'s mean and log standard deviation.

    Args:
        input_size: image side S, px (a multiple of 16; the thesis: 64, or 128).
        z_dim: latent variables (the thesis: 256).
        variational: a VAE (True) or a deterministic (denoising) autoencoder (False).
    """

    def __init__(self, input_size: int = 64, z_dim: int = 256, variational: bool = True,
                 feature_maps: tuple[int, ...] = FEATURE_MAPS):  # fmt: skip
        super().__init__()
        self.input_size, self.z_dim, self.variational = input_size, z_dim, variational
        self.encoder = ConvEncoder(input_size, 2 * z_dim if variational else z_dim, feature_maps)
        self.decoder = ConvDecoder(input_size, z_dim, feature_maps)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, log sigma) of q(z|x), each (N, z); an autoencoder gives (code, None). x: (N, 1, S, S)."""
        code = self.encoder(x)
        if not self.variational:
            return code, None
        mean, log_sigma = code.chunk(2, dim=1)
        return mean, log_sigma

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """g(z): (N, z) -> (N, 1, S, S), the mean of p(x|z)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(reconstruction, mean, log sigma); z = mean + sigma * noise (the reparameterisation; noise (N, z)),
        or z = mean without noise (the posterior mean, and always for an autoencoder)."""
        mean, log_sigma = self.encode(x)
        z = mean if noise is None or log_sigma is None else mean + log_sigma.exp() * noise
        return self.decode(z), mean, log_sigma
