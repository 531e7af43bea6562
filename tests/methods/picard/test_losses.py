import math

import pytest
import torch

from picard_ad.methods.picard.losses import (
    critic_wasserstein_loss,
    discounted_hole_l1,
    generator_adversarial_loss,
    gradient_penalty,
    known_region_l1,
    spatial_discount_mask,
)


def test_spatial_discount_is_one_on_every_edge_and_gamma_to_the_distance_inside():
    mask = spatial_discount_mask(128, 128, 0.9)[0, 0]
    assert mask.shape == (128, 128)
    for edge in (mask[0], mask[-1], mask[:, 0], mask[:, -1]):
        assert torch.equal(edge, torch.ones(128))
    for k in (1, 2, 10, 40, 63):
        assert mask[k, k].item() == pytest.approx(0.9**k, rel=1e-6)
        assert mask[k, 64].item() == pytest.approx(0.9**k, rel=1e-6)  # the nearest edge decides
        assert mask[127 - k, 64].item() == pytest.approx(0.9**k, rel=1e-6)  # symmetric
    assert mask.min().item() == pytest.approx(0.9**63, rel=1e-6)
    assert torch.equal(mask, mask.flip(0)) and torch.equal(mask, mask.T)
    rectangular = spatial_discount_mask(4, 6, 0.5)[0, 0]
    assert rectangular[1].tolist() == [1.0, 0.5, 0.5, 0.5, 0.5, 1.0]


def test_gradient_penalty_is_exact_for_a_linear_critic():
    weights = torch.tensor([3.0, 4.0, 0.0, 0.0]).reshape(1, 1, 2, 2)  # ||w|| = 5

    def critic(x):
        return (x * weights).flatten(1).sum(1)

    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx((5.0 - 1.0) ** 2)
    unit = weights / 5.0
    assert gradient_penalty(lambda x: (x * unit).flatten(1).sum(1), real, fake).item() == pytest.approx(0.0, abs=1e-12)


def test_gradient_penalty_uses_per_sample_interpolation_and_backpropagates_to_the_critic():
    scale = torch.tensor(1.0, requires_grad=True)

    def critic(x):  # gradient 2 * scale * x_hat, norm depends on where x_hat lies
        return scale * (x**2).flatten(1).sum(1)

    real = torch.ones(2, 1, 1, 1)
    fake = torch.zeros(2, 1, 1, 1)
    alpha = torch.tensor([0.25, 1.0])
    penalty = gradient_penalty(critic, real, fake, alpha)
    expected = ((2 * 0.25 - 1) ** 2 + (2 * 1.0 - 1) ** 2) / 2
    assert penalty.item() == pytest.approx(expected)
    penalty.backward()
    # d/dscale mean((2 scale a - 1)^2) = mean(2 (2 scale a - 1) 2 a)
    assert scale.grad.item() == pytest.approx((2 * (-0.5) * 0.5 + 2 * 1.0 * 2.0) / 2)


def test_wasserstein_terms():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([[0.5], [-0.5]])
    assert critic_wasserstein_loss(real, fake).item() == pytest.approx(0.0 - 2.0)
    assert generator_adversarial_loss(fake).item() == pytest.approx(0.0)
    assert generator_adversarial_loss(torch.tensor([2.0, 4.0])).item() == pytest.approx(-3.0)


def test_hole_l1_weights_the_bbox_with_the_discount_and_ignores_known_pixels():
    truth = torch.zeros(1, 1, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1.0
    bbox = (2, 2, 4, 4)
    discount = spatial_discount_mask(4, 4, 0.5)
    stage1 = torch.full((1, 1, 8, 8), 0.5)  # wrong everywhere, but only the hole counts
    stage2 = torch.full((1, 1, 8, 8), 1.0)
    loss = discounted_hole_l1(stage1, stage2, truth, mask, bbox, discount, coarse_weight=1.2)
    weights = discount.mean().item()  # 12 edge pixels at 1, 4 inner at 0.5
    assert weights == pytest.approx((12 + 4 * 0.5) / 16)
    assert loss.item() == pytest.approx(1.2 * 0.5 * weights + 1.0 * weights)


def test_known_region_term_averages_over_all_pixels():
    truth = torch.zeros(2, 1, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :2] = 1.0  # half the pixels are hole
    stage1, stage2 = torch.full_like(truth, 1.0), torch.full_like(truth, -0.5)
    loss = known_region_l1(stage1, stage2, truth, mask, coarse_weight=1.2)
    assert loss.item() == pytest.approx(1.2 * 0.5 + 0.5 * 0.5)
    assert math.isclose(known_region_l1(truth, truth, truth, mask, 1.2).item(), 0.0)
