"""The WGAN critics and the feature encoder phi."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from picard_ad.errors import ConfigError
from picard_ad.methods.picard import GlobalCritic, LocalCritic


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_and_keys():
    local, global_ = LocalCritic(), GlobalCritic()
    assert _count(local.dis_conv_module) == _count(global_.dis_conv_module) == 666_752
    assert _count(local) == 674_945 and _count(global_) == 699_521
    assert list(local.state_dict()) == [
        *(f"dis_conv_module.conv{i}.conv.{kind}" for i in range(1, 5) for kind in ("weight", "bias")),
        "linear.weight",
        "linear.bias",
    ]
    assert local.state_dict()["linear.weight"].shape == (1, 8192)
    assert global_.state_dict()["linear.weight"].shape == (1, 32768)


def test_scores_and_features_shapes():
    local = LocalCritic().eval()
    patches = torch.rand(3, 1, 128, 128) * 2 - 1
    with torch.no_grad():
        assert local(patches).shape == (3, 1)
        assert local.features(patches).shape == (3, 8192)
        assert GlobalCritic().eval()(torch.zeros(2, 1, 256, 256)).shape == (2, 1)
    assert LocalCritic().feature_dim == 8192 and GlobalCritic().feature_dim == 32768


def test_features_are_the_fourth_leaky_relu_output_and_feed_the_linear_head():
    torch.manual_seed(0)
    local = LocalCritic(cnum=8, input_size=64).eval()
    patches = torch.rand(2, 1, 64, 64) * 2 - 1
    x = patches
    for index in range(1, 5):
        conv = getattr(local.dis_conv_module, f"conv{index}").conv
        x = F.leaky_relu(F.conv2d(x, conv.weight, conv.bias, stride=2, padding=2), 0.2)
    with torch.no_grad():
        features = local.features(patches)
        scores = local(patches)
    assert x.shape == (2, 32, 4, 4)
    torch.testing.assert_close(features, x.flatten(1))
    torch.testing.assert_close(scores, features @ local.linear.weight.T + local.linear.bias)
    assert (features < 0).any()  # LeakyReLU, not ReLU


def test_rejects_wrong_input_sizes():
    with pytest.raises(ValueError, match=r"\(N, 1, 128, 128\)"):
        LocalCritic()(torch.zeros(1, 1, 256, 256))
    with pytest.raises(ConfigError, match="multiple of 16"):
        GlobalCritic(input_size=100)
