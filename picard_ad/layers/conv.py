"""A convolution block with an optional activation and test-time dropout, fusable into one oneDNN kernel."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from picard_ad.layers.dropout import ChannelDropout
from picard_ad.layers.fused import LEAKY_RELU_SLOPE, FusedConvolution

_ACTIVATIONS = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "lrelu": lambda: nn.LeakyReLU(LEAKY_RELU_SLOPE),
}


class ConvBlock(nn.Module):
    """Conv2d (with bias, zero padding) then an optional activation, then test-time dropout if asked for.

    in_channels, out_channels: channel counts; kernel_size, stride, padding, dilation: as in ``nn.Conv2d``.
    activation: "elu", "relu", "lrelu" (LeakyReLU 0.2) or None (a plain convolution, for output layers).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        activation: str | None = "elu",
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=True)
        self.activation_name = activation
        self.activation = None if activation is None else _ACTIVATIONS[activation]()
        # Set by the owning network to the block's qualified name; it keys the dropout masks, so it must not
        # change when the network is wrapped (DataParallel, compile), unlike names from named_modules().
        self.layer_name = ""
        self.fused: FusedConvolution | None = None  # set by fuse_convolutions

    def activated(
        self,
        x: torch.Tensor,
        scale: torch.Tensor | None = None,
        padding: int | None = None,
        upsample: bool = False,
    ) -> torch.Tensor:
        """activation(conv(x)) [* scale]. scale: (N, out_channels, 1, 1) or None. padding: None for the
        convolution's own, 0 for a valid convolution of a window that already holds its surroundings.
        upsample: x is upsampled x2 (nearest) first."""
        if self.fused is not None:
            return self.fused(x, scale, padding, upsample)
        if upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        conv = self.conv
        x = conv(x) if padding is None else F.conv2d(x, conv.weight, conv.bias, conv.stride, padding, conv.dilation)
        if self.activation is not None:
            x = self.activation(x)
        return x if scale is None else x * scale.to(x.dtype)

    def forward(
        self,
        x: torch.Tensor,
        dropout: ChannelDropout | None = None,
        padding: int | None = None,
        upsample: bool = False,
    ) -> torch.Tensor:
        """x: (N, in_channels, H, W) -> (N, out_channels, H', W'); padding, upsample: as for ``activated``."""
        if dropout is None:
            return self.activated(x, padding=padding, upsample=upsample)
        scale = dropout.channel_scale(self.layer_name, x.shape[0], self.conv.out_channels, x.device)
        x = self.activated(x, scale, padding, upsample)
        return x if scale is not None else dropout(x, self.layer_name)


def fuse_convolutions(network: nn.Module) -> int:
    """Run every ConvBlock of ``network`` as fused oneDNN kernels (``picard_ad.layers.fused``) from now on.

    For CPU inference only: the weights are frozen into the kernels, which do not compute gradients. Returns the
    number of blocks fused.
    """
    blocks = [module for module in network.modules() if isinstance(module, ConvBlock)]
    for block in blocks:
        block.fused = FusedConvolution(block.conv, block.activation_name)
    return len(blocks)


@contextlib.contextmanager
def unfused(network: nn.Module) -> Iterator[None]:
    """Run ``network``'s fused ConvBlocks unfused inside the block (no kernels get built), e.g. for a one-off
    pass at a batch shape that will not recur. Not thread-safe: nothing else may run the network meanwhile."""
    fused = {block: block.fused for block in network.modules() if isinstance(block, ConvBlock)}
    for block in fused:
        block.fused = None
    try:
        yield
    finally:
        for block, kernels in fused.items():
            block.fused = kernels
