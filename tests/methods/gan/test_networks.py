"""The GANs' networks against the paper's appendix tables, minibatch discrimination, self-attention and AnoGAN's
latent search against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from picard_ad.methods.gan import (
    CodeDiscriminator,
    Encoder,
    Generator,
    ImageDiscriminator,
    JointDiscriminator,
    MinibatchDiscrimination,
    SelfAttention,
    anogan_terms,
    build_networks,
    latent_search,
)
from picard_ad.methods.gan.config import ALPHA_GAN_PRESETS, DCGAN_PRESETS


def _channels(module: nn.Module, kind=(nn.Conv2d, nn.ConvTranspose2d)) -> list[int]:
    return [m.out_channels for m in module.modules() if isinstance(m, kind) and m.kernel_size == (4, 4)]


def test_the_paper_dcgan_layout():
    config = DCGAN_PRESETS["paper"]
    networks = build_networks("dcgan", config)
    assert _channels(networks["generator"]) == [1024, 512, 256, 128, 64, 32, 16, 1]
    discriminator = networks["discriminator"]
    assert _channels(discriminator) == [4, 8, 16, 32, 64, 128, 256, 512]  # then 1 x 1 x 512
    assert discriminator.minibatch.kernels == 16 and discriminator.head.in_features == 528  # "(1, 1, 528)", FC
    assert not any(isinstance(m, nn.BatchNorm2d) for n in networks.values() for m in n.modules())


def test_the_paper_encoder_and_discriminator_layouts_at_128_px():
    config = ALPHA_GAN_PRESETS["paper"]
    alpha = build_networks("alpha-gan", config)
    assert _channels(alpha["generator"]) == [1024, 512, 256, 128, 64, 1]
    assert _channels(alpha["encoder"]) == [64, 128, 256, 512, 1024, 200]  # "mean and variance (1, 1, 200)"
    assert _channels(alpha["discriminator"]) == [64, 128, 256, 512, 1024, 1024]
    assert sum(isinstance(m, SelfAttention) for m in alpha["encoder"].modules()) == 2  # † at 8 x 8 and 4 x 4
    images = torch.rand(2, 1, 128, 128) * 2 - 1
    with torch.no_grad():
        mean, log_variance = alpha["encoder"].eval()(images)
        assert mean.shape == log_variance.shape == (2, 100)
        assert alpha["generator"].eval()(mean).shape == (2, 1, 128, 128)
        assert alpha["code_discriminator"](mean).shape == (2,)
    joint = build_networks("bigan", config)["discriminator"]
    assert _channels(joint) == [64, 128, 256, 512, 1024, 1024]  # image branch to (1, 1, 1024)
    linear = [m.out_features for m in joint.modules() if isinstance(m, nn.Linear)]
    assert linear == [512, 512, 1024, 1024, 1]  # code branch, then the combination
    with torch.no_grad():
        assert joint(images, mean).shape == (2,)


def test_small_networks_shapes_and_ranges():
    generator = Generator(8, 32, 4, batch_norm=True).eval()
    with torch.no_grad():
        images = generator(torch.randn(3, 8))
    assert images.shape == (3, 1, 32, 32) and float(images.abs().max()) <= 1
    assert ImageDiscriminator(32, 4, 16, minibatch_kernels=4, batch_size=4)(images).shape == (3,)
    assert Encoder(32, 4, 8)(images)[0].shape == (3, 8)
    assert JointDiscriminator(32, 4, 8)(images, torch.randn(3, 8)).shape == (3,)
    assert CodeDiscriminator(8)(torch.randn(3, 8)).shape == (3,)
    with pytest.raises(ValueError, match="power of two"):
        Generator(8, 48, 4, batch_norm=False)


@torch.no_grad()
def test_minibatch_discrimination_shape_and_effect():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(10, kernels=5, kernel_dim=3)
    identical = torch.randn(1, 10).expand(4, 10)
    diverse = torch.randn(4, 10) * 10
    same, spread = layer(identical), layer(diverse)
    assert same.shape == spread.shape == (4, 15)
    assert torch.equal(same[:, :10], identical) and torch.equal(spread[:, :10], diverse)  # the input passes through
    assert torch.allclose(same[:, 10:], torch.full((4, 5), 3.0))  # N - 1 identical others: exp(0) each
    assert float(spread[:, 10:].max()) < 0.5  # far apart: close to nothing
    # by hand for one sample and kernel
    m = (diverse @ layer.T).view(4, 5, 3)
    expected = sum(float(torch.exp(-(m[0, 2] - m[j, 2]).abs().sum())) for j in (1, 2, 3))
    assert float(spread[0, 12]) == pytest.approx(expected, rel=1e-5)
    # against a reference: the sum over the reference samples, scaled
    reference = layer(diverse[:1], reference=identical, scale=2.0)
    assert reference.shape == (1, 15)
    m_ref = (identical @ layer.T).view(4, 5, 3)
    expected = 2.0 * sum(float(torch.exp(-(m[0, 1] - m_ref[j, 1]).abs().sum())) for j in range(4))
    assert float(reference[0, 11]) == pytest.approx(expected, rel=1e-5)


def test_a_discriminator_scores_one_image_against_its_remembered_batch():
    torch.manual_seed(1)
    discriminator = ImageDiscriminator(32, 4, 16, minibatch_kernels=4, batch_size=5).eval()
    batch = torch.rand(5, 1, 32, 32) * 2 - 1
    discriminator.remember(batch)
    assert torch.equal(discriminator.reference, batch[:4]) and discriminator.scale == 1.0
    with torch.no_grad():
        alone = discriminator(batch[4:], against_reference=True)
        in_batch = discriminator(batch)[4:]  # the same sample among the same four others
    assert torch.allclose(alone, in_batch, atol=1e-5)
    assert "reference" in discriminator.state_dict()  # saved with the weights


def test_self_attention_starts_as_the_identity():
    layer = SelfAttention(8)
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(layer(x), x)
    layer.gamma.data.fill_(1.0)
    assert not torch.allclose(layer(x), x)


def test_the_latent_search_lowers_the_residual_and_scores_by_hand():
    torch.manual_seed(2)
    generator = Generator(8, 16, 4, batch_norm=False).eval()
    discriminator = ImageDiscriminator(16, 4, 16, minibatch_kernels=4, batch_size=4).eval()
    with torch.no_grad():
        image = generator(torch.randn(1, 8))  # an image the generator can make
    mask = torch.ones(1, 1, 16, 16)
    mask[..., :3] = 0
    found = latent_search(generator, discriminator, image, mask, iterations=200, lr=0.05, lam=0.1, seed=0)
    assert found.residual < 0.5 * found.start_residual
    # A(z*) = (1 - lambda) sum_mask |x - G(z*)| + lambda sum |f(x) - f(G(z*))|, intensities in [0, 1]
    z = torch.from_numpy(found.z)[None]
    with torch.no_grad():
        generated = generator(z)
        x01, g01 = (image[0, 0].numpy() + 1) / 2, (generated[0, 0].numpy() + 1) / 2
        features = discriminator.features(image)[0].numpy(), discriminator.features(generated)[0].numpy()
    residual = float(np.sum(np.abs(x01 - g01) * mask[0, 0].numpy(), dtype=np.float64))
    feature_loss = float(np.sum(np.abs(features[0] - features[1]), dtype=np.float64))
    assert found.residual == pytest.approx(residual, rel=1e-4)
    assert found.feature_loss == pytest.approx(feature_loss, rel=1e-4)
    assert found.score == pytest.approx(0.9 * residual + 0.1 * feature_loss, rel=1e-4)
    assert np.allclose(found.residual_map, np.abs(x01 - g01) * mask[0, 0].numpy(), atol=1e-6)
    assert np.all(found.residual_map[:, :3] == 0)
    assert all(p.requires_grad for p in generator.parameters())  # the weights are left as they were
    again = latent_search(generator, discriminator, image, mask, iterations=200, lr=0.05, lam=0.1, seed=0)
    assert again.score == found.score  # seeded start: repeatable
    with torch.no_grad():
        zero = anogan_terms(generator, discriminator, image, mask, torch.zeros(1, 8))
    assert zero[2].shape == (1, 1, 16, 16)
