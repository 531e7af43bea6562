"""Test-time channel dropout: masks are a pure function of (seed, layer, channel), whatever the batch."""

from __future__ import annotations

import zlib

import pytest
import torch
from networks import lively_generator

from picard_ad.errors import ConfigError
from picard_ad.layers import ChannelDropout
from picard_ad.methods.picard import (
    DROPOUT_LAYER_NAMES,
    DROPOUT_PRESETS,
    InpaintingGenerator,
    resolve_dropout_layers,
)

UINT32 = 0xFFFFFFFF


def python_mix32(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & UINT32
    x ^= x >> 15
    x = (x * 0x846CA68B) & UINT32
    return x ^ (x >> 16)


def python_keep(seed: int, layer: str, channel: int, p: float) -> bool:
    """An independent plain-integer implementation of the documented mask rule."""
    state = python_mix32(zlib.crc32(layer.encode()) ^ (seed & UINT32))
    state = python_mix32(state ^ ((seed >> 32) & UINT32))
    return python_mix32(state ^ python_mix32(channel)) >= round(p * 2**32)


@pytest.fixture(scope="module")
def generator() -> InpaintingGenerator:
    """A small generator with variance-preserving weights: with PyTorch's default init the signal fades over
    the 17 layers of a stage, so dropout in early layers would barely reach the output, unlike a trained net."""
    return lively_generator(cnum=8)


def _inputs(batch: int, seed: int = 0, size: int = 64):
    rng = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 1, size, size, generator=rng) * 2 - 1
    masks = torch.zeros(batch, 1, size, size)
    masks[:, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return images, masks


def test_keep_mask_matches_a_plain_integer_implementation_and_pinned_values():
    seeds = [1337, -1, 2**40 + 7, 0, 2**63 - 1, -(2**63)]
    dropout = ChannelDropout(0.5, DROPOUT_PRESETS["reference"], torch.tensor(seeds))
    for layer in ("coarse_generator.conv3", "fine_generator.pmconv9"):
        keep = dropout.keep_mask(layer, 200)
        expected = [[python_keep(seed, layer, c, 0.5) for c in range(200)] for seed in seeds]
        assert keep.tolist() == expected
    # Pinned: a change here silently changes every published pluralistic completion.
    pinned = dropout.keep_mask("coarse_generator.conv3", 16)[:3]
    as_text = ["".join("1" if kept else "0" for kept in row) for row in pinned.tolist()]
    assert as_text == ["1101101100001111", "1100000001111011", "1110101011000011"]


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_fraction_of_dropped_channels_is_p(p):
    dropout = ChannelDropout(p, DROPOUT_PRESETS["paper"], torch.arange(2000))
    dropped = 1.0 - dropout.keep_mask("fine_generator.conv5", 128).float()
    assert abs(dropped.mean().item() - p) < 0.005
    # Not the same channels for every sample, nor for every layer.
    assert dropped.std(dim=0).min() > 0.3
    other_layer = 1.0 - dropout.keep_mask("fine_generator.conv6", 128).float()
    assert (dropped != other_layer).float().mean() > 0.3


def _conv3_outputs(generator, dropout: ChannelDropout) -> tuple[torch.Tensor, torch.Tensor]:
    """Coarse conv3's block output without and with ``dropout`` (which must act on that layer)."""
    images, masks = _inputs(2)
    captured = []
    hook = generator.coarse_generator.conv3.register_forward_hook(lambda m, i, out: captured.append(out))
    try:
        with torch.no_grad():
            generator(images, masks)
            generator(images, masks, dropout)
    finally:
        hook.remove()
    return captured[0], captured[1]


def test_survivors_are_scaled_and_dropped_channels_are_zero(generator):
    layer = "coarse_generator.conv3"
    dropout = ChannelDropout(0.5, {layer}, torch.tensor([5, 6]))
    plain, dropped = _conv3_outputs(generator, dropout)
    keep = dropout.keep_mask(layer, plain.shape[1])
    assert 0 < int(keep.sum()) < keep.numel()
    assert torch.all(dropped[~keep] == 0)
    torch.testing.assert_close(dropped[keep], 2.0 * plain[keep])


def test_same_seed_same_completion_whatever_the_batch(generator):
    images, masks = _inputs(5, seed=1)
    neighbours, _ = _inputs(4, seed=9)
    paper = DROPOUT_PRESETS["paper"]
    with torch.no_grad():
        batched = generator.complete(images, masks, ChannelDropout(0.5, paper, torch.tensor([11, 22, 33, 44, 55])))
        alone = generator.complete(images[2:3], masks[2:3], ChannelDropout(0.5, paper, torch.tensor([33])))
        # Sample 2 with seed 33 again, now at position 3 between different neighbours.
        shuffled_images = torch.cat([neighbours[:3], images[2:3], neighbours[3:]])
        shuffled_seeds = torch.tensor([7, 8, 9, 33, 10])
        shuffled = generator.complete(shuffled_images, masks, ChannelDropout(0.5, paper, shuffled_seeds))
        another_seed = generator.complete(images[2:3], masks[2:3], ChannelDropout(0.5, paper, torch.tensor([34])))
    # Only float rounding differs between batch sizes, while another seed moves the hole by ~5e-3 on average.
    torch.testing.assert_close(alone[0], batched[2], rtol=1e-4, atol=5e-4)
    torch.testing.assert_close(shuffled[3], batched[2], rtol=1e-4, atol=5e-4)
    assert (another_seed[0] - batched[2]).abs().mean() > 1e-3


def test_different_seeds_give_different_completions(generator):
    images, masks = _inputs(1)
    pair = images.expand(2, -1, -1, -1)
    with torch.no_grad():
        for preset in ("reference", "paper"):
            dropout = ChannelDropout(0.5, DROPOUT_PRESETS[preset], torch.tensor([1, 2]))
            completions = generator.complete(pair, masks.expand(2, -1, -1, -1), dropout)
            hole = masks[0].bool().expand_as(completions[0])
            assert (completions[0] - completions[1])[hole].abs().mean() > 1e-3


def test_zero_probability_and_none_are_the_deterministic_network(generator):
    images, masks = _inputs(2)
    with torch.no_grad():
        plain = generator(images, masks)
        again = generator(images, masks, dropout=None)
        zero = generator(images, masks, ChannelDropout(0.0, DROPOUT_PRESETS["paper"], torch.tensor([3, 4])))
    for a, b, c in zip(plain, again, zero):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_reference_preset_leaves_the_fine_stage_alone(generator):
    """Dropping only coarse layers changes x_stage1; a fine-only layer list leaves x_stage1 untouched."""
    images, masks = _inputs(1)
    seeds = torch.tensor([99])
    with torch.no_grad():
        plain_1, plain_2 = generator(images, masks)
        coarse_1, _ = generator(images, masks, ChannelDropout(0.5, DROPOUT_PRESETS["reference"], seeds))
        fine_1, fine_2 = generator(images, masks, ChannelDropout(0.5, {"fine_generator.allconv16"}, seeds))
    assert not torch.equal(coarse_1, plain_1)
    assert torch.equal(fine_1, plain_1) and not torch.equal(fine_2, plain_2)


def test_presets_hold_exactly_the_documented_layers():
    assert DROPOUT_PRESETS["reference"] == {
        f"coarse_generator.{name}"
        for name in ("conv2_downsample", "conv3", "conv4_downsample", "conv5", "conv6")
        + tuple(f"conv{i}_atrous" for i in range(7, 11))
    }
    paper = DROPOUT_PRESETS["paper"]
    assert len(paper) == 26 and DROPOUT_PRESETS["reference"] <= paper
    fine = {name.split(".", 1)[1] for name in paper if name.startswith("fine_generator.")}
    assert "conv1" not in fine and "pmconv1" in fine and {"pmconv9", "pmconv10", "conv10_atrous"} <= fine
    assert not any(name.startswith("allconv") for name in fine)
    assert len(DROPOUT_LAYER_NAMES) == 42 and set(paper) <= set(DROPOUT_LAYER_NAMES)


def test_resolve_dropout_layers_validates_names():
    assert resolve_dropout_layers("paper") == DROPOUT_PRESETS["paper"]
    custom = ["coarse_generator.conv3", "fine_generator.allconv12"]
    assert resolve_dropout_layers(custom) == frozenset(custom)
    with pytest.raises(ConfigError, match="valid presets: reference, paper"):
        resolve_dropout_layers("everything")
    with pytest.raises(ConfigError, match=r"self\.conv3.*valid layers: coarse_generator\.conv1,"):
        resolve_dropout_layers(["self.conv3"])


def test_generator_refuses_unknown_layers_and_wrong_seed_counts(generator):
    images, masks = _inputs(2)
    with pytest.raises(ConfigError, match="unknown dropout layer"):
        generator(images, masks, ChannelDropout(0.5, {"fine_generator.conv3.dropout"}, torch.tensor([1, 2])))
    with pytest.raises(ValueError, match="3 seeds for a batch of 2"):
        generator(images, masks, ChannelDropout(0.5, DROPOUT_PRESETS["paper"], torch.tensor([1, 2, 3])))


def test_channel_dropout_validates_its_arguments():
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        ChannelDropout(1.0, DROPOUT_PRESETS["paper"], torch.tensor([1]))
    with pytest.raises(ConfigError, match="collection of layer names"):
        ChannelDropout(0.5, "coarse_generator.conv3", torch.tensor([1]))
    with pytest.raises(ValueError, match="int64"):
        ChannelDropout(0.5, DROPOUT_PRESETS["paper"], torch.tensor([1.0]))


# --- element-wise dropout ------------------------------------------------------------------------------------------


def python_element_keep(seed: int, layer: str, channel: int, row: int, col: int, p: float) -> bool:
    """The documented element rule in plain integers: the channel's hash chain goes on with row, then column."""
    state = python_mix32(zlib.crc32(layer.encode()) ^ (seed & UINT32))
    state = python_mix32(state ^ ((seed >> 32) & UINT32))
    state = python_mix32(state ^ python_mix32(channel))
    state = python_mix32(state ^ python_mix32(row))
    return python_mix32(state ^ python_mix32(col)) >= round(p * 2**32)


def test_element_keep_mask_matches_a_plain_integer_implementation():
    seeds = [1337, -1, 2**40 + 7]
    layer = "coarse_generator.conv5"
    keep = ChannelDropout(0.3, {layer}, torch.tensor(seeds), kind="element").element_keep_mask(layer, (3, 4, 70))
    expected = [[[[python_element_keep(seed, layer, c, y, x, 0.3) for x in range(70)] for y in range(4)]
                 for c in range(3)] for seed in seeds]
    assert keep.tolist() == expected


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_element_dropout_drops_about_p_of_the_activations_independently(p):
    layer = "coarse_generator.conv3"
    dropout = ChannelDropout(p, {layer}, torch.arange(8), kind="element")
    dropped = 1.0 - dropout(torch.ones(8, 16, 32, 40), layer).clamp(max=1.0)
    assert abs(dropped.mean().item() - p) < 0.01
    # Not whole channels as spatial dropout: each channel map loses about p of its 1280 activations (std 0.014),
    # and no position is favoured: each loses about p of its 128 activations over samples and channels (std 0.044).
    assert (dropped.mean(dim=(2, 3)) - p).abs().max() < 0.1
    assert (dropped.mean(dim=(0, 1)) - p).abs().max() < 0.25


def test_element_masks_of_a_sample_are_the_same_alone_or_in_a_batch():
    layer = "coarse_generator.conv6"
    batch = ChannelDropout(0.5, {layer}, torch.tensor([11, 22, 33]), kind="element")
    alone = ChannelDropout(0.5, {layer}, torch.tensor([22]), kind="element")
    assert torch.equal(batch.element_keep_mask(layer, (8, 20, 24))[1:2], alone.element_keep_mask(layer, (8, 20, 24)))


def test_element_dropout_through_the_generator(generator):
    """Same completion for a sample alone or among others, p = 0 is the deterministic network, and element
    masks give other completions than spatial ones with the same seeds."""
    images, masks = _inputs(3, seed=2)
    reference = DROPOUT_PRESETS["reference"]
    seeds = torch.tensor([5, 6, 7])
    with torch.no_grad():
        batched = generator.complete(images, masks, ChannelDropout(0.5, reference, seeds, kind="element"))
        alone = generator.complete(images[1:2], masks[1:2],
                                   ChannelDropout(0.5, reference, seeds[1:2], kind="element"))
        spatial = generator.complete(images, masks, ChannelDropout(0.5, reference, seeds))
        plain = generator(images, masks)
        zero = generator(images, masks, ChannelDropout(0.0, reference, seeds, kind="element"))
    torch.testing.assert_close(alone[0], batched[1], rtol=1e-4, atol=5e-4)
    hole = masks.bool().expand_as(batched)
    assert (batched - spatial)[hole].abs().mean() > 1e-3
    assert all(torch.equal(a, b) for a, b in zip(plain, zero))


def test_element_dropout_zeroes_activations_and_scales_survivors(generator):
    layer = "coarse_generator.conv3"
    dropout = ChannelDropout(0.25, {layer}, torch.tensor([5, 6]), kind="element")
    plain, dropped = _conv3_outputs(generator, dropout)
    keep = dropout.element_keep_mask(layer, tuple(plain.shape[1:]))
    assert torch.all(dropped[~keep] == 0)
    torch.testing.assert_close(dropped[keep], plain[keep] / 0.75)


def test_unknown_dropout_kind_is_refused():
    with pytest.raises(ConfigError, match="valid kinds: spatial, element"):
        ChannelDropout(0.5, DROPOUT_PRESETS["paper"], torch.tensor([1]), kind="channel")


def test_channel_scale_is_the_spatial_mask_as_factors():
    dropout = ChannelDropout(0.25, {"a"}, torch.arange(3))
    scale = dropout.channel_scale("a", 3, 5)
    assert scale.shape == (3, 5, 1, 1) and scale.dtype == torch.float32
    assert torch.equal(scale[:, :, 0, 0], dropout.keep_mask("a", 5).float() / 0.75)
    assert dropout.channel_scale("b", 3, 5) is None
    assert ChannelDropout(0.25, {"a"}, torch.arange(3), kind="element").channel_scale("a", 3, 5) is None
    with pytest.raises(ValueError, match="3 seeds but the batch has 4"):
        dropout.channel_scale("a", 4, 5)
