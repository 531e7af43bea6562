"""The completion network: layer table, parameter counts, input handling and the model registry."""

from __future__ import annotations

import pytest
import torch
from networks import lively_generator
from torch import nn

from picard_ad.errors import ConfigError
from picard_ad.layers import ChannelDropout
from picard_ad.methods.picard import InpaintingGenerator, resolve_dropout_layers


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def generator() -> InpaintingGenerator:
    """cnum 32 with variance-preserving weights, so the completion depends on the input as a trained one does
    (with PyTorch's default init the signal fades over the 17 layers of a stage)."""
    return lively_generator(cnum=32)


def _inputs(batch: int, height: int, width: int, seed: int = 0):
    rng = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 1, height, width, generator=rng) * 2 - 1
    masks = torch.zeros(batch, 1, height, width)
    masks[:, :, height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 1
    return images, masks


def test_parameter_counts_match_the_reference(generator):
    assert _count(generator) == 3_596_162
    assert _count(generator.coarse_generator) == 1_446_337
    fine = generator.fine_generator
    assert _count(fine) == 2_149_825
    branches = {name: sum(_count(getattr(fine, layer)) for layer in layers) for name, layers in fine.branches().items()}
    assert branches == {"conv_branch": 878_880, "attention_branch": 694_368, "merge": 576_577}


def test_state_dict_keys_follow_the_reference(generator):
    state = generator.state_dict()
    assert len(state) == 2 * 42
    assert state["coarse_generator.conv1.conv.weight"].shape == (32, 3, 5, 5)
    assert state["coarse_generator.conv10_atrous.conv.weight"].shape == (128, 128, 3, 3)
    assert state["coarse_generator.conv17.conv.weight"].shape == (1, 16, 3, 3)
    assert state["fine_generator.conv4_downsample.conv.weight"].shape == (64, 64, 3, 3)
    assert state["fine_generator.pmconv4_downsample.conv.weight"].shape == (128, 64, 3, 3)
    assert state["fine_generator.pmconv10.conv.bias"].shape == (128,)
    assert state["fine_generator.allconv11.conv.weight"].shape == (128, 256, 3, 3)
    assert state["fine_generator.allconv17.conv.weight"].shape == (1, 16, 3, 3)
    assert not any("attention" in key for key in state)


def test_layer_hyperparameters(generator):
    coarse, fine = generator.coarse_generator, generator.fine_generator
    assert coarse.conv2_downsample.conv.stride == (2, 2)
    assert [getattr(coarse, f"conv{i}_atrous").conv.dilation[0] for i in range(7, 11)] == [2, 4, 8, 16]
    assert [getattr(fine, f"conv{i}_atrous").conv.padding[0] for i in range(7, 11)] == [2, 4, 8, 16]
    assert isinstance(fine.pmconv6.activation, nn.ReLU)
    assert coarse.conv17.activation is None and fine.allconv17.activation is None
    elu_layers = [m for m in generator.modules() if isinstance(m, nn.ELU)]
    assert len(elu_layers) == 42 - 3  # all but pmconv6 and the two output layers
    upsampled = [spec.name for spec in coarse.specs if spec.upsample_before]
    assert upsampled == ["conv13", "conv15"]
    assert coarse.conv1.layer_name == "coarse_generator.conv1" and fine.pmconv9.layer_name == "fine_generator.pmconv9"


@pytest.mark.parametrize("height, width", [(64, 64), (128, 128), (64, 96)])
def test_shapes_and_range(generator, height, width):
    images, masks = _inputs(2, height, width)
    with torch.no_grad():
        x_stage1, x_stage2 = generator(images, masks)
    assert x_stage1.shape == x_stage2.shape == images.shape
    for output in (x_stage1, x_stage2):
        assert torch.isfinite(output).all() and output.min() >= -1 and output.max() <= 1


def test_paper_size_256(generator):
    images, masks = _inputs(1, 256, 256)
    with torch.no_grad():
        _, x_stage2 = generator(images, masks)
    assert x_stage2.shape == (1, 1, 256, 256)


def test_outputs_are_clamped_not_squashed():
    network = InpaintingGenerator(in_channels=1, cnum=4).eval()
    with torch.no_grad():
        network.coarse_generator.conv17.conv.bias.fill_(5.0)
        network.fine_generator.allconv17.conv.bias.fill_(-5.0)
        x_stage1, x_stage2 = network(*_inputs(1, 32, 32))
    assert torch.all(x_stage1 == 1.0) and torch.all(x_stage2 == -1.0)


def test_hole_content_cannot_leak(generator):
    images, masks = _inputs(2, 64, 64)
    noisy = images + 10.0 * masks * torch.randn_like(images)
    with torch.no_grad():
        clean_outputs = generator(images, masks)
        noisy_outputs = generator(noisy, masks)
    for clean, noisy_output in zip(clean_outputs, noisy_outputs):
        assert torch.equal(clean, noisy_output)


def test_complete_pastes_the_fine_stage_into_the_hole(generator):
    images, masks = _inputs(2, 64, 64)
    with torch.no_grad():
        _, x_stage2 = generator(images, masks)
        completed = generator.complete(images, masks)
    hole = masks.bool()
    assert torch.equal(completed[~hole], images[~hole])
    assert torch.equal(completed[hole], x_stage2[hole])


@pytest.mark.parametrize(
    ("size", "region"),
    [((64, 64), (16, 16, 48, 48)), ((64, 96), (20, 4, 44, 52)), ((32, 48), (0, 0, 16, 40))],
)
def test_complete_region_equals_the_full_forward_inside_the_region(size, region):
    """The cropped decoders give exactly the full outputs in the region, with per-sample masks and dropout in
    both stages (allconv12 and conv15 sit in the cropped decoders), also where the region touches the border."""
    torch.manual_seed(1)
    network = InpaintingGenerator(in_channels=1, cnum=8).eval()
    height, width = size
    top, left, bottom, right = region
    images, _ = _inputs(3, height, width, seed=2)
    masks = torch.zeros(3, 1, height, width)
    masks[:, :, top:bottom, left:right] = 1
    masks[1, :, top + 2 : bottom - 3, left + 1 : right - 1] = 0  # a different hole for one sample
    layers = resolve_dropout_layers("paper") | {"fine_generator.allconv12", "coarse_generator.conv15"}
    dropout = ChannelDropout(0.5, layers, torch.arange(3))
    with torch.no_grad():
        full_stage1, full_stage2 = network(images, masks, dropout)
        stage1, stage2 = network.complete_region(images, masks, region, dropout)
        undropped = network.complete_region(images, masks, region)[1]
    assert stage1.shape == stage2.shape == (3, 1, bottom - top, right - left)
    torch.testing.assert_close(stage1, full_stage1[..., top:bottom, left:right], rtol=0, atol=1e-6)
    torch.testing.assert_close(stage2, full_stage2[..., top:bottom, left:right], rtol=0, atol=1e-6)
    assert (stage2 - undropped).abs().mean() > 1e-3  # the dropout really acted on the region path


def test_complete_region_with_element_dropout_of_the_last_dilated_layers_equals_the_full_forward():
    """Element masks are keyed by map position, so the last dilated layers then run on whole maps (not cropped
    as under spatial dropout) and the region still equals the full forward's."""
    network = lively_generator(cnum=8, seed=5)
    images, _ = _inputs(2, 64, 64, seed=6)
    masks = torch.zeros(2, 1, 64, 64)
    masks[:, :, 16:48, 16:48] = 1
    layers = resolve_dropout_layers("reference") | {"fine_generator.conv10_atrous", "fine_generator.conv5"}
    dropout = ChannelDropout(0.5, layers, torch.arange(2), kind="element")
    with torch.no_grad():
        full = network(images, masks, dropout)
        region = network.complete_region(images, masks, (16, 16, 48, 48), dropout)
        spatial = network.complete_region(images, masks, (16, 16, 48, 48), ChannelDropout(0.5, layers, torch.arange(2)))
    for stage, expected in zip(region, full):
        torch.testing.assert_close(stage, expected[..., 16:48, 16:48], rtol=0, atol=1e-5)
    assert (region[1] - spatial[1]).abs().mean() > 1e-3


@pytest.mark.parametrize("preset", ["reference", "paper"])
@pytest.mark.parametrize(("size", "region"), [((64, 64), (16, 16, 48, 48)), ((48, 72), (8, 4, 40, 44))])
def test_repeated_completions_equal_completions_of_repeated_images(preset, size, region):
    """Running once per image what the completions of an image share (coarse layers before the first dropout
    layer, the fine stage's early layers outside the hole's reach) gives the completions of R image copies."""
    network = lively_generator(cnum=8, seed=3)
    height, width = size
    top, left, bottom, right = region
    images, _ = _inputs(2, height, width, seed=4)
    masks = torch.zeros(2, 1, height, width)
    masks[:, :, top:bottom, left:right] = 1
    masks[1, :, top + 3 : bottom, left : right - 2] = 0  # a different hole for one image
    repeats = 3
    dropout = ChannelDropout(0.5, resolve_dropout_layers(preset), torch.arange(2 * repeats) + 11)
    with torch.no_grad():
        shared = network.complete_region(images, masks, region, dropout, repeats)
        copies = network.complete_region(
            images.repeat_interleave(repeats, 0), masks.repeat_interleave(repeats, 0), region, dropout
        )
    for stage, expected in zip(shared, copies):
        assert stage.shape == (2 * repeats, 1, bottom - top, right - left)
        torch.testing.assert_close(stage, expected, rtol=0, atol=1e-5)
    assert (copies[1][0] - copies[1][1]).abs().mean() > 1e-3  # the completions of one image do differ
    with pytest.raises(ValueError, match="seeds for a batch of 2 x 3 completions"):
        network.complete_region(images, masks, region, ChannelDropout(0.5, dropout.layers, torch.arange(2)), 3)


def test_complete_region_rejects_holes_outside_the_region(generator):
    images, masks = _inputs(2, 64, 64)
    with pytest.raises(ValueError, match="outside the region"):
        generator.complete_region(images, masks, (16, 16, 40, 48))
    with pytest.raises(ValueError, match="not inside"):
        generator.complete_region(images, masks, (16, 16, 48, 72))


def test_gradients_reach_every_parameter():
    network = InpaintingGenerator(in_channels=1, cnum=4)
    images, masks = _inputs(2, 32, 32)
    x_stage1, x_stage2 = network(images, masks)
    (x_stage1.abs().mean() + x_stage2.abs().mean()).backward()
    missing = [name for name, p in network.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_bfloat16_autocast_channels_last_agrees_with_float32(generator):
    images, masks = _inputs(2, 64, 64)
    with torch.no_grad():
        reference = generator.complete(images, masks)
        fast = generator.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            completed = fast.complete(images.contiguous(memory_format=torch.channels_last), masks)
    generator.to(memory_format=torch.contiguous_format)
    hole = masks.expand_as(reference).bool()
    difference = (completed.float() - reference).abs()[hole]
    # bfloat16 rounding over ~40 layers: about 0.007 on average here, against a spread of 0.3 in the hole.
    assert difference.mean() < 0.02 and reference[hole].std() > 0.1


def test_rejects_bad_inputs(generator):
    images, masks = _inputs(1, 64, 64)
    with pytest.raises(ValueError, match="multiples of 8"):
        generator(images[..., :60], masks[..., :60])
    with pytest.raises(ValueError, match="mask must be"):
        generator(images, masks[..., :32])
    with pytest.raises(ValueError, match=r"image must be \(N, 1, H, W\)"):
        generator(images.expand(-1, 3, -1, -1), masks)
    with pytest.raises(ConfigError, match="even cnum"):
        InpaintingGenerator(cnum=7)


def test_other_widths_and_colour_input():
    network = InpaintingGenerator(in_channels=3, cnum=8).eval()
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    masks = torch.zeros(1, 1, 32, 32)
    masks[..., 8:24, 8:24] = 1
    with torch.no_grad():
        x_stage1, x_stage2 = network(images, masks)
    assert x_stage1.shape == x_stage2.shape == (1, 3, 32, 32)
    assert network.state_dict()["coarse_generator.conv1.conv.weight"].shape == (8, 5, 5, 5)

