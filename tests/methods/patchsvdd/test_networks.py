"""The hierarchical encoder computes the reference's quadrant recursion; the losses on hand examples."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from picard_ad.methods.patchsvdd.losses import patch_svdd_loss, position_loss, svdd_loss
from picard_ad.methods.patchsvdd.networks import LEAK, HierarchicalEncoder, PositionClassifier, encoder_macs


def _reference_hierarchy(encoder: HierarchicalEncoder, x: torch.Tensor, level: int) -> torch.Tensor:
    """The reference's EncoderHier: encode the four quadrants, put their features in a 2 x 2 grid, aggregate."""
    if level == 0:
        return encoder.sub_patch(x)
    half = x.shape[-1] // 2
    quadrants = [x[..., :half, :half], x[..., :half, half:], x[..., half:, :half], x[..., half:, half:]]
    h1, h2, h3, h4 = (_reference_hierarchy(encoder, q, level - 1) for q in quadrants)
    grid = torch.cat([torch.cat([h1, h2], dim=3), torch.cat([h3, h4], dim=3)], dim=2)
    aggregate = encoder.levels[level - 1]
    h = F.leaky_relu(F.conv2d(grid, aggregate.conv1.weight, aggregate.conv1.bias), LEAK)  # no dilation: a 2 x 2 grid
    return torch.tanh(aggregate.conv2(h))


@pytest.mark.parametrize("patch_size", [64, 128])
def test_the_dense_hierarchy_is_the_reference_recursion(patch_size, one_torch_thread):
    torch.manual_seed(0)
    encoder = HierarchicalEncoder(patch_size, cnum=4, feature_dim=8).eval()
    x = torch.rand(3, 1, patch_size, patch_size) * 2 - 1
    levels = int(math.log2(patch_size // 32))
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), _reference_hierarchy(encoder, x, levels).flatten(1))
        half = x[..., : patch_size // 2, : patch_size // 2]
        torch.testing.assert_close(encoder(half), _reference_hierarchy(encoder, half, levels - 1).flatten(1))
        window, centre = encoder.window_features(x)
        offset = patch_size // 4
        crop = x[..., offset : offset + patch_size // 2, offset : offset + patch_size // 2]
        torch.testing.assert_close(window, encoder(x))
        torch.testing.assert_close(centre, encoder(crop))  # K = 128: read from the grid; K = 64: encoded alone


def test_the_encoder_refuses_patches_it_cannot_tile():
    encoder = HierarchicalEncoder(64, cnum=2, feature_dim=4)
    with pytest.raises(ValueError, match="32 px times a power of two, got 48"):
        encoder(torch.zeros(1, 1, 48, 48))
    with pytest.raises(ValueError, match="cannot encode level 2"):
        encoder(torch.zeros(1, 1, 128, 128))
    with pytest.raises(ValueError, match="takes 64 px windows"):
        encoder.window_features(torch.zeros(1, 1, 128, 128))


@pytest.mark.parametrize("patch_size", [64, 128])
def test_the_counted_macs_are_the_convolutions(patch_size):
    encoder = HierarchicalEncoder(patch_size, cnum=4, feature_dim=8)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        encoder.window_features(torch.zeros(1, 1, patch_size, patch_size))
    assert counter.get_total_flops() == 2 * encoder_macs(patch_size, 4, 8)


def test_the_svdd_loss_is_the_mean_distance_of_pairs():
    features = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    moved = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0]])
    assert svdd_loss(features, moved).item() == pytest.approx((0 + 5 + 1) / 3)


def test_the_position_loss_is_the_cross_entropy_of_the_true_neighbour():
    labels = torch.tensor([2, 7])
    assert position_loss(torch.zeros(2, 8), labels).item() == pytest.approx(math.log(8))  # no idea: ln 8
    confident = torch.full((2, 8), -20.0)
    confident[0, 2] = confident[1, 7] = 20.0
    assert position_loss(confident, labels).item() == pytest.approx(7 * math.exp(-40), abs=1e-12)
    logits = torch.log(torch.tensor([[0.5, 0.5, 0, 0, 0, 0, 0, 0]]) + 1e-30)
    assert position_loss(logits, torch.tensor([1])).item() == pytest.approx(math.log(2))
    assert patch_svdd_loss(torch.tensor(2.0), torch.tensor(0.5), svdd_lambda=0.1).item() == pytest.approx(0.7)


def test_the_classifier_reads_the_difference_of_the_features():
    classifier = PositionClassifier(feature_dim=4, hidden=8)
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(classifier(a, b), classifier(a - b, torch.zeros(5, 4)))
    assert classifier(a, b).shape == (5, 8)
