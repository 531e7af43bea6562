"""What the tests of the VAE's data path share: a VAE with a seeded, untrained network treated as fitted, and the
network inputs it builds (importable: pytest puts tests/ on the path)."""

from __future__ import annotations

import dataclasses

import torch

from picard_ad.methods.vae import VAE, VAE_PRESETS, ConvAutoencoder, VAESettings

SIZE = 32
"""The side of the networks' input, px."""


def untrained_vae(zscore: str = "slice", **settings) -> VAE:
    """A VAE at ``SIZE`` px (z = 8, the tiny preset's training config with ``zscore``) with a seeded, untrained
    network, treated as fitted; ``settings`` are its scoring settings."""
    torch.manual_seed(0)
    train = dataclasses.replace(VAE_PRESETS["tiny"], input_size=SIZE, z_dim=8, zscore=zscore)
    method = VAE(train, VAESettings(device="cpu", gradient="vanilla", **settings))
    method.network, method.fitted = ConvAutoencoder(SIZE, 8).eval(), True
    return method


def captured_inputs(method: VAE) -> list[torch.Tensor]:
    """Every network input the method builds from now on, (1, 1, S, S) each."""
    seen, build = [], method.network_input

    def network_input(image, mask=None, statistics=None):
        seen.append(build(image, mask, statistics))
        return seen[-1]

    method.network_input = network_input
    return seen
