"""Fused oneDNN convolution kernels against the plain torch blocks they replace."""

import threading

import pytest
import torch
import torch.nn.functional as F

from picard_ad.layers import ChannelDropout, ConvBlock, fuse_convolutions, unfused
from picard_ad.layers.fused import FusedConvolution, fusion_available
from picard_ad.methods.picard import InpaintingGenerator, resolve_dropout_layers

pytestmark = pytest.mark.skipif(not fusion_available(), reason="torch has no oneDNN Graph fuser")

ACTIVATIONS = {"elu": F.elu, "relu": F.relu, "lrelu": lambda x: F.leaky_relu(x, 0.2), None: lambda x: x}


def _conv(dtype: torch.dtype, padding: int = 2, dilation: int = 2) -> torch.nn.Conv2d:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 8, 3, padding=padding, dilation=dilation).to(dtype)
    return conv.to(memory_format=torch.channels_last).requires_grad_(False)


def _inputs(dtype: torch.dtype, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 6, 13, 17, generator=generator).to(dtype).contiguous(memory_format=torch.channels_last)
    scale = (torch.rand(batch, 8, 1, 1, generator=generator) > 0.5).float() * 2.0
    return x, scale


def _ran_fused_kernels(run) -> bool:
    """Whether ``run()`` executed oneDNN Graph partitions (the fused kernels), not the unfused fallback."""
    with torch.profiler.profile() as profile:
        run()
    return any(event.name.startswith("LlgaPartition") for event in profile.events())


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_float32_kernels_equal_the_plain_block_and_really_fuse(activation):
    conv = _conv(torch.float32)
    fused = FusedConvolution(conv, activation)
    x, scale = _inputs(torch.float32)
    with torch.inference_mode():
        result = fused(x, scale)
        expected = ACTIVATIONS[activation](conv(x)) * scale
    torch.testing.assert_close(result, expected, atol=1e-6, rtol=1e-5)
    assert len(fused) == 1
    with torch.inference_mode():
        assert _ran_fused_kernels(lambda: fused(x, scale))


def test_bf16_elu_is_within_one_rounding_step_of_torch():
    conv = _conv(torch.bfloat16)
    fused = FusedConvolution(conv, "elu")
    x, scale = _inputs(torch.bfloat16)
    with torch.inference_mode():
        result = fused(x, scale).float()
        expected = (F.elu(conv(x)) * scale.bfloat16()).float()
        exact = F.elu(F.conv2d(x.float(), conv.weight.float(), conv.bias.float(), padding=2, dilation=2)) * scale
    # The fused ELU sees the unrounded convolution output: at most one bf16 step (2**-8 relative) from torch's,
    # and at least as close to the float32 value.
    step = expected.abs().clamp_min(2**-8) * 2**-7
    assert bool(((result - expected).abs() <= step).all())
    assert (result - exact).abs().mean() <= (expected - exact).abs().mean()
    assert result.dtype == torch.float32 and fused(x).dtype == torch.bfloat16


def test_padding_override_gives_a_valid_convolution_of_a_window():
    conv = _conv(torch.float32)
    fused = FusedConvolution(conv, "elu")
    x, _ = _inputs(torch.float32)
    padded = F.pad(x, (2, 2, 2, 2))
    with torch.inference_mode():
        torch.testing.assert_close(fused(padded, padding=0), fused(x), atol=1e-6, rtol=1e-5)
    assert len(fused) == 2


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_upsampled_convolution_equals_upsampling_then_convolving(layout):
    conv = _conv(torch.float32, padding=1, dilation=1).to(memory_format=layout)
    fused = FusedConvolution(conv, "elu")
    x, scale = _inputs(torch.float32)
    x = x.contiguous(memory_format=layout)
    with torch.inference_mode():
        result = fused(x, scale, upsample=True)
        expected = F.elu(conv(F.interpolate(x, scale_factor=2, mode="nearest"))) * scale
    assert result.shape == (4, 8, 26, 34) and result.is_contiguous(memory_format=layout)
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="3 x 3 'same' convolution"):
        FusedConvolution(_conv(torch.float32), "elu")(x, upsample=True)  # dilation 2


def test_each_sample_is_independent_of_its_batch_and_of_autocast():
    conv = _conv(torch.bfloat16)
    fused = FusedConvolution(conv, "elu")
    x, scale = _inputs(torch.bfloat16, batch=5)
    with torch.inference_mode():
        whole = fused(x, scale)
        singles = torch.cat([fused(x[i : i + 1], scale[i : i + 1]) for i in range(5)])
        with torch.autocast("cpu", torch.bfloat16):
            under_autocast = fused(x.float(), scale)
    assert torch.equal(whole, singles)
    assert torch.equal(whole, under_autocast)


def test_threads_building_and_running_the_same_kernels_agree():
    conv = _conv(torch.float32)
    fused = FusedConvolution(conv, "relu")
    x, scale = _inputs(torch.float32)
    results = [None] * 4

    def run(index: int) -> None:
        with torch.inference_mode():
            results[index] = fused(x, scale if index % 2 else None)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fused) == 2
    assert torch.equal(results[0], results[2]) and torch.equal(results[1], results[3])
    assert torch.equal(results[1], results[0] * scale)


def test_non_dense_inputs_are_made_dense_first():
    conv = _conv(torch.float32)
    fused = FusedConvolution(conv, None)
    x, _ = _inputs(torch.float32)
    crop = x[..., 2:11, 3:15]
    assert not crop.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(fused(crop), conv(crop), atol=1e-6, rtol=1e-5)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="tanh"):
        FusedConvolution(_conv(torch.float32), "tanh")


def test_fused_generator_completes_like_the_plain_one():
    torch.manual_seed(0)
    plain = InpaintingGenerator(1, 8).eval().requires_grad_(False)
    fused = InpaintingGenerator(1, 8).eval().requires_grad_(False)
    fused.load_state_dict(plain.state_dict())
    assert fuse_convolutions(fused) == sum(isinstance(m, ConvBlock) for m in fused.modules())
    image = torch.rand(2, 1, 64, 64) * 2 - 1
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1.0
    dropout = ChannelDropout(0.5, resolve_dropout_layers("paper"), torch.arange(6))
    with torch.inference_mode():
        expected = plain.complete_region(image, mask, (16, 16, 48, 48), dropout, repeats=3)
        result = fused.complete_region(image, mask, (16, 16, 48, 48), dropout, repeats=3)
    for got, want in zip(result, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    with torch.inference_mode():
        assert _ran_fused_kernels(lambda: fused.complete_region(image, mask, (16, 16, 48, 48), dropout, repeats=3))


def test_unfused_runs_plain_blocks_and_builds_nothing():
    network = torch.nn.Sequential(ConvBlock(3, 4, 3, padding=1), ConvBlock(4, 2, 3, padding=1, activation=None))
    network.eval().requires_grad_(False)
    fuse_convolutions(network)
    with torch.inference_mode(), unfused(network):
        assert all(block.fused is None for block in network)
        network(torch.rand(1, 3, 8, 8))
    assert all(len(block.fused) == 0 for block in network)
