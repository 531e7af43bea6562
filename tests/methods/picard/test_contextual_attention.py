"""Contextual attention: the batched implementation against a literal per-sample port of the spec's 8 steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from picard_ad.methods.picard import ContextualAttention


def literal_single_sample(feature: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Spec section 1, steps 1-7, for one sample (1, C, H, W) with its (1, 1, 4H, 4W) mask, f = b = feature."""
    channels = feature.shape[1]
    # 1. raw 4x4 patches, stride 2, "same" padding (1 on each side)
    raw = F.unfold(F.pad(feature, (1, 1, 1, 1)), 4, stride=2)
    raw = raw.view(channels, 4, 4, -1).permute(3, 0, 1, 2)  # (L, C, 4, 4)
    # 2. nearest x1/2, 3x3 matching patches with "same" zero padding
    small = F.interpolate(feature, scale_factor=0.5, mode="nearest")
    height, width = small.shape[-2:]
    kernels = F.unfold(F.pad(small, (1, 1, 1, 1)), 3).view(channels, 3, 3, -1).permute(3, 0, 1, 2)
    # 3. mask nearest x1/8; a patch is valid when its 3x3 mask mean is 0
    small_mask = F.interpolate(mask, scale_factor=1 / 8, mode="nearest")
    valid = F.unfold(F.pad(small_mask, (1, 1, 1, 1)), 3).mean(dim=1).eq(0).float().view(1, -1, 1, 1)
    # 4. normalise with 1e-4 per element, match by convolution
    normed = kernels / torch.sqrt((kernels.pow(2) + 1e-4).sum(dim=(1, 2, 3), keepdim=True))
    scores = F.conv2d(F.pad(small, (1, 1, 1, 1)), normed)  # (1, L, h, w)
    # 5. fuse twice with a 3x3 identity kernel, the second time on the transposed layout
    eye = torch.eye(3).view(1, 1, 3, 3)
    scores = scores.view(1, 1, height * width, height * width)
    scores = F.conv2d(F.pad(scores, (1, 1, 1, 1)), eye)
    scores = scores.view(1, height, width, height, width).permute(0, 2, 1, 4, 3).reshape(1, 1, height * width, -1)
    scores = F.conv2d(F.pad(scores, (1, 1, 1, 1)), eye)
    scores = scores.view(1, width, height, width, height).permute(0, 2, 1, 4, 3).reshape(1, -1, height, width)
    # 6. mask, softmax(10 x) over patches, mask again
    attention = F.softmax(scores * valid * 10.0, dim=1) * valid
    # 7. paste raw patches back, divide by 4
    return F.conv_transpose2d(attention, raw, stride=2, padding=1) / 4.0


def _features_and_masks(batch: int = 3, channels: int = 8, height: int = 16, width: int = 24):
    generator = torch.Generator().manual_seed(0)
    features = torch.relu(torch.randn(batch, channels, height, width, generator=generator))
    masks = torch.zeros(batch, 1, 4 * height, 4 * width)
    boxes = [(8, 40, 16, 56), (0, 24, 50, 96), (30, 64, 0, 40), (16, 48, 16, 48), (4, 20, 70, 90)]
    for index in range(batch):
        top, bottom, left, right = boxes[index]
        masks[index, :, top:bottom, left:right] = 1.0
    return features, masks


def test_batched_matches_the_literal_per_sample_algorithm():
    features, masks = _features_and_masks()
    ours = ContextualAttention()(features, features, masks)
    literal = torch.cat([literal_single_sample(features[i : i + 1], masks[i : i + 1]) for i in range(3)])
    assert ours.shape == features.shape
    torch.testing.assert_close(ours, literal, rtol=1e-4, atol=1e-5)


def test_batch_equals_single_sample_calls_each_with_its_own_mask():
    features, masks = _features_and_masks(batch=5)
    attention = ContextualAttention()
    batched = attention(features, features, masks)
    for index in range(5):
        single = attention(features[index : index + 1], features[index : index + 1], masks[index : index + 1])
        torch.testing.assert_close(batched[index : index + 1], single, rtol=1e-5, atol=1e-6)
    # The reference's shortcut (sample 0's mask for everyone) would give a different answer for sample 1.
    with_first_mask = attention(features[1:2], features[1:2], masks[0:1])
    assert (with_first_mask - batched[1:2]).abs().max() > 1e-3


def test_patches_touching_the_hole_get_zero_weight_and_the_rest_sum_to_one():
    features, masks = _features_and_masks()
    weights = ContextualAttention().attention_weights(features, features, masks)
    assert weights.shape == (3, 8 * 12, 8 * 12) and weights.dtype == torch.float32  # (N, P, L)
    for index in range(3):
        hole = masks[index, 0, ::8, ::8]
        touching = F.max_pool2d(hole[None, None], 3, stride=1, padding=1)[0, 0].flatten() > 0
        assert 0 < int(touching.sum()) < touching.numel()
        assert torch.all(weights[index, :, touching] == 0)
        valid_total = weights[index, :, ~touching].sum(dim=1)
        # Masked scores still enter the softmax denominator as exp(0) (reference behaviour), so the valid
        # weights sum to at most 1; with ReLU features and scale 10 they dominate.
        assert torch.all(valid_total <= 1 + 1e-5) and torch.all(valid_total > 0.5)


def test_without_mask_every_patch_is_valid_and_weights_sum_to_one():
    features, _ = _features_and_masks(batch=2)
    weights = ContextualAttention().attention_weights(features, features)
    torch.testing.assert_close(weights.sum(dim=2), torch.ones(2, 96))


def test_foreground_distinct_from_background_uses_both():
    features, masks = _features_and_masks(batch=2)
    attention = ContextualAttention()
    other = features.flip(-1)
    mixed = attention(other, features, masks)
    assert not torch.allclose(mixed, attention(features, features, masks))
    assert not torch.allclose(mixed, attention(other, other, masks))


def test_autocast_bfloat16_keeps_matching_in_float32():
    features, masks = _features_and_masks()
    attention = ContextualAttention()
    reference = attention(features, features, masks)
    bf16 = features.bfloat16().contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weights = attention.attention_weights(bf16, bf16, masks)
        output = attention(bf16, bf16, masks)
    assert weights.dtype == torch.float32
    assert output.dtype == torch.bfloat16
    torch.testing.assert_close(output.float(), reference, rtol=0.02, atol=0.02)


def test_rejects_mismatched_shapes_and_mask_sizes():
    features, masks = _features_and_masks()
    attention = ContextualAttention()
    with pytest.raises(ValueError, match="same"):
        attention(features, features[:, :, :8], masks)
    with pytest.raises(ValueError, match="multiple"):
        attention(features, features, masks[:, :, :60])
    with pytest.raises(ValueError, match="mask must be"):
        attention(features, features, masks[:2])


@pytest.mark.parametrize(
    "region", [(4, 4, 12, 11), (3, 3, 13, 13), (3, 5, 13, 16), (0, 0, 7, 9), (6, 2, 16, 16), (0, 0, 16, 16)]
)
def test_a_region_equals_that_part_of_the_full_reconstruction(region):
    """Only the foreground positions pasting into the region are weighed (and, away from the grid's ends, only
    those within the fusion's reach are matched); the region comes out unchanged."""
    torch.manual_seed(3)
    features = torch.randn(2, 4, 16, 16)
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, 16:40, 20:44] = 1
    mask[1, :, 8:32, 24:56] = 1
    attention = ContextualAttention()
    top, left, bottom, right = region
    full = attention(features, features, mask)
    part = attention(features, features, mask, region)
    assert part.shape == (2, 4, bottom - top, right - left)
    torch.testing.assert_close(part, full[..., top:bottom, left:right], rtol=0, atol=1e-6)
