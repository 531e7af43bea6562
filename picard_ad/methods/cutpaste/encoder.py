"""CutPaste's encoder f: a ResNet-18 for grey images, trained from scratch, and its inference form.

The layout is ResNet-18's (He et al. 2016, as in torchvision): a 7 x 7 stride-2 stem convolution and a 3 x 3
stride-2 max pool, then four stages of two basic blocks (two 3 x 3 convolutions and a shortcut) with 1, 2, 4 and 8
times ``width`` channels, each stage after the first halving the resolution, then global average pooling. Li et al.
2021 use this network (ImageNet-pretrained in their main results); here it takes one grey channel and starts from
random weights, as nothing may be downloaded. ``width`` 64 is ResNet-18 itself; smaller widths are the same network
scaled down for CPU demos and tests.

The embedding a window gets, ``f(x)``, is the pooled output of the last stage (``width * 8`` values), the
representation Li et al. fit their Gaussian density estimator to (not the projection head's output).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

STAGE_MULTIPLIERS = (1, 2, 4, 8)
INTENSITY_NORMALISATION = "reader output in [0, 1] (picard_ad.io, normalization='auto'), then x * 2 - 1 inside f"


class ConvNorm(nn.Module):
    """A bias-free convolution then batch normalisation, ResNet's unit; ``folded`` merges the two for inference.

    kernel_size is odd and padded to keep the size ("same"), so only ``stride`` changes the resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))

    def folded(self) -> nn.Conv2d:
        """One convolution with bias that computes what this unit computes in eval mode (running statistics)."""
        norm = self.norm
        scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
        conv = copy.deepcopy(self.conv)
        conv.weight = nn.Parameter(self.conv.weight.detach() * scale[:, None, None, None], requires_grad=False)
        conv.bias = nn.Parameter(norm.bias.detach() - norm.running_mean * scale, requires_grad=False)
        return conv


class BasicBlock(nn.Module):
    """relu(conv-norm(relu(conv-norm(x))) + shortcut(x)); the shortcut is a 1 x 1 conv-norm where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = ConvNorm(in_channels, out_channels, 3, stride)
        self.conv2 = ConvNorm(out_channels, out_channels, 3)
        changes_shape = stride != 1 or in_channels != out_channels
        self.shortcut = ConvNorm(in_channels, out_channels, 1, stride) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


class ResNet18Encoder(nn.Module):
    """f: grey images (N, 1, H, W) float in [0, 1] -> embeddings (N, width * 8), ResNet-18 shaped.

    Args:
        width: channels of the first stage (64: ResNet-18); the stages have 1, 2, 4 and 8 times as many.
        in_channels: image channels (1: grey).
    """

    def __init__(self, width: int = 64, in_channels: int = 1):
        super().__init__()
        self.width = width
        self.in_channels = in_channels
        self.stem = ConvNorm(in_channels, width, 7, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, channels = [], width
        for index, multiplier in enumerate(STAGE_MULTIPLIERS):
            out = width * multiplier
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(BasicBlock(channels, out, stride), BasicBlock(out, out, 1)))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.embedding_dim = channels
        self._initialise()

    def _initialise(self) -> None:
        # torchvision's ResNet initialisation (He et al. 2015 for ReLU networks, unit batch-norm scale).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.stem(images * 2 - 1)))
        return self.stages(x).mean(dim=(2, 3))


def fold_batch_norms(encoder: ResNet18Encoder) -> ResNet18Encoder:
    """A copy of ``encoder`` for inference with every conv-norm unit merged into one convolution with bias (the
    same function as the encoder in eval mode, one pass over each activation map fewer per unit)."""
    folded = copy.deepcopy(encoder).eval()
    units = [(name, module) for name, module in folded.named_modules() if isinstance(module, ConvNorm)]
    for name, unit in units:
        parent_name, _, attribute = name.rpartition(".")
        setattr(folded.get_submodule(parent_name), attribute, unit.folded())
    for parameter in folded.parameters():
        parameter.requires_grad_(False)
    return folded


def multiply_adds(encoder: ResNet18Encoder, patch_size: int) -> int:
    """Multiply-adds of the convolutions of one forward of a ``patch_size`` window (FLOPs are about twice this)."""
    total = 0

    def count(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * kernel

    hooks = [module.register_forward_hook(count) for module in encoder.modules() if isinstance(module, nn.Conv2d)]
    training = encoder.training
    try:
        with torch.no_grad():
            encoder.eval()(torch.zeros(1, encoder.in_channels, patch_size, patch_size))
    finally:
        encoder.train(training)
        for hook in hooks:
            hook.remove()
    return total
