"""The thesis' DCGAN-like network: shapes at 64 and 128 px, the heads, the layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from picard_ad.methods.vae import ConvAutoencoder


@pytest.mark.parametrize("size, last_kernel", [(64, 4), (128, 8)])
def test_the_network_maps_a_slice_to_a_code_and_back(size, last_kernel):
    network = ConvAutoencoder(size, z_dim=256)
    x = torch.randn(2, 1, size, size)
    mean, log_sigma = network.encode(x)
    assert mean.shape == log_sigma.shape == (2, 256)
    assert network.decode(mean).shape == (2, 1, size, size)
    convolutions = [m for m in network.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convolutions] == [16, 32, 64, 256, 512]
    assert [c.stride for c in convolutions[:4]] == [(2, 2)] * 4 and convolutions[-1].kernel_size == (last_kernel,) * 2
    transposed = [m for m in network.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [c.out_channels for c in transposed] == [256, 64, 32, 16, 1]
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) for m in network.modules())


def test_the_reparameterised_code_and_the_autoencoder():
    torch.manual_seed(0)
    network = ConvAutoencoder(32, z_dim=8)
    x, noise = torch.randn(1, 1, 32, 32), torch.randn(1, 8)
    mean, log_sigma = network.encode(x)
    reconstruction, *_ = network(x, noise)
    torch.testing.assert_close(reconstruction, network.decode(mean + log_sigma.exp() * noise))
    torch.testing.assert_close(network(x)[0], network.decode(mean))
    plain = ConvAutoencoder(32, z_dim=8, variational=False)
    code, nothing = plain.encode(x)
    assert code.shape == (1, 8) and nothing is None
    with pytest.raises(ValueError, match="multiple of 16"):
        ConvAutoencoder(40)
