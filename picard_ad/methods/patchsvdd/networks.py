"""PatchSVDD's networks (Yi and Yoon 2020), pure ``nn.Module``s: the hierarchical patch encoder and the classifier of
the relative-position task.

The architecture is the reference code's (github.com/nuclearboy95/Anomaly-Detection-PatchSVDD-PyTorch,
``codes/networks.py``): a small convolutional encoder (``EncoderDeep`` there, ``SubPatchEncoder`` here) maps a 32 px
sub-patch to a D-vector; a 64 px patch is encoded from the vectors of its 2 x 2 sub-patches by a 2 x 2 convolution,
a leaky ReLU, a 1 x 1 convolution and tanh (``EncoderHier``). The reference repeats that step for larger patches
(``EncoderHier(K)`` holds ``EncoderHier(K // 2)``), so a 256 px patch is 2 x 2 patches of 128 px, each 2 x 2 of 64
px, each 2 x 2 of 32 px; one level of aggregation per doubling.

Here every level runs densely over a grid of 32 px tiles: level l is a 2 x 2 convolution with dilation 2^(l-1) on
the grid of level l - 1, which computes the reference's quadrant recursion exactly (tested) and in the same pass
gives every 32 * 2^l px patch whose corner lies on the tile grid, e.g. the centred half of a 256 px window.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SUB_PATCH = 32  # px: the side the sub-patch encoder sees (the reference's K = 32)
N_POSITIONS = 8  # neighbours of a patch in the relative-position task
LEAK = 0.1  # negative slope of every leaky ReLU (reference)


def hierarchy_levels(patch_size: int) -> int:
    """Aggregation levels above the 32 px sub-patches for a patch of ``patch_size`` px (64 -> 1, 256 -> 3)."""
    levels = round(math.log2(patch_size / SUB_PATCH)) if patch_size >= SUB_PATCH else -1
    if levels < 0 or SUB_PATCH * 2**levels != patch_size:
        raise ValueError(f"patch sides are 32 px times a power of two, got {patch_size}")
    return levels


class SubPatchEncoder(nn.Module):
    """The reference's ``EncoderDeep``: (N, C, 32, 32) -> (N, D, 1, 1) in (-1, 1); eight 3 x 3 convolutions without
    padding (the first with stride 2), leaky ReLUs between them, tanh at the end.

    Args:
        in_channels: image channels (1: grey).
        cnum: base width; the layers have cnum, 2, 4, 4, 2, 1, 1 cnum channels, then D (reference: cnum 32).
        feature_dim: D, the length of a feature vector (reference: 64).
    """

    def __init__(self, in_channels: int = 1, cnum: int = 32, feature_dim: int = 64):
        super().__init__()
        widths = [in_channels, cnum, 2 * cnum, 4 * cnum, 4 * cnum, 2 * cnum, cnum, cnum, feature_dim]
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, stride=2 if i == 0 else 1) for i in range(len(widths) - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs[:-1]:
            x = F.leaky_relu(conv(x), LEAK)
        return torch.tanh(self.convs[-1](x))


class Aggregation(nn.Module):
    """One level of the hierarchy: the 2 x 2 convolution over four quadrants' features (D -> hidden), a leaky ReLU,
    a 1 x 1 convolution (hidden -> D) and tanh, run over a whole feature grid.

    dilation: grid cells between the quadrants' features: 2^(l-1) at level l on a grid of 32 px tiles.
    """

    def __init__(self, feature_dim: int, hidden: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv2d(feature_dim, hidden, 2, dilation=dilation)
        self.conv2 = nn.Conv2d(hidden, feature_dim, 1)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv2(F.leaky_relu(self.conv1(grid), LEAK)))


class HierarchicalEncoder(nn.Module):
    """f_theta of Patch SVDD: a patch of side 32 * 2^l px (l <= levels) -> its D-vector.

    Args:
        patch_size: K, the largest patch side it encodes (64, 128, 256, ...); the reference's EncoderHier(K).
        in_channels, cnum, feature_dim: as for ``SubPatchEncoder``; the aggregation levels are 4 * cnum wide (the
            reference's 128).
    """

    def __init__(self, patch_size: int = 64, in_channels: int = 1, cnum: int = 32, feature_dim: int = 64):
        super().__init__()
        self.patch_size = patch_size
        self.feature_dim = feature_dim
        self.sub_patch = SubPatchEncoder(in_channels, cnum, feature_dim)
        self.levels = nn.ModuleList(
            Aggregation(feature_dim, 4 * cnum, dilation=2**level) for level in range(hierarchy_levels(patch_size))
        )
        he_initialise(self)

    def grids(self, x: torch.Tensor, levels: int) -> list[torch.Tensor]:
        """Feature grids of levels 0..``levels`` of images x (N, C, S, S), S a multiple of 32 px.

        Entry (i, j) of level l's grid, (N, D, S/32 - 2^l + 1, same), is the feature of the 32 * 2^l px patch whose
        top-left corner is at pixel (32 i, 32 j).
        """
        n, channels, side, _ = x.shape
        tiles = side // SUB_PATCH
        if side % SUB_PATCH or x.shape[-1] != side or tiles < 2**levels or levels > len(self.levels):
            raise ValueError(f"cannot encode level {levels} of {tuple(x.shape)} images (square, 32 px tiles)")
        cut = x.reshape(n, channels, tiles, SUB_PATCH, tiles, SUB_PATCH).permute(0, 2, 4, 1, 3, 5)
        features = self.sub_patch(cut.reshape(n * tiles * tiles, channels, SUB_PATCH, SUB_PATCH))
        grid = features.reshape(n, tiles, tiles, -1).permute(0, 3, 1, 2)
        grids = [grid]
        for aggregate in self.levels[:levels]:
            grids.append(aggregate(grids[-1]))
        return grids

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, D) of patches x (N, C, P, P), P = 32 * 2^l px for l <= levels (K and K/2 when training)."""
        return self.grids(x, hierarchy_levels(x.shape[-1]))[-1].flatten(1)

    def window_features(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features of the windows, features of their centred halves), each (N, D), of windows (N, C, K, K).

        A centred half whose corner lies on the 32 px grid (K >= 128) is read from the level below the window's;
        at K = 64 its corner is 16 px in, so it is encoded on its own (one more 32 px sub-patch per window).
        """
        levels = hierarchy_levels(self.patch_size)
        if windows.shape[-1] != self.patch_size:
            raise ValueError(f"the encoder takes {self.patch_size} px windows, got {tuple(windows.shape)}")
        grids = self.grids(windows, levels)
        offset, half = self.patch_size // 4, self.patch_size // 2
        if offset % SUB_PATCH == 0:
            cell = offset // SUB_PATCH
            centre = grids[-2][:, :, cell, cell]
        else:
            centre = self(windows[..., offset : offset + half, offset : offset + half])
        return grids[-1].flatten(1), centre


class PositionClassifier(nn.Module):
    """C_phi of the self-supervised task: which of the 8 neighbours of a patch another patch is.

    Takes the difference of the two patches' features (as the reference does), (N, D) -> logits (N, 8): two
    hidden layers with leaky ReLUs. The reference's last layer normalises its weight under ``no_grad``, so that
    weight never trains; here it is a plain linear layer (the paper describes no such layer).
    """

    def __init__(self, feature_dim: int = 64, hidden: int = 128):
        super().__init__()
        self.fc1 = nn.Linear(feature_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, N_POSITIONS)
        he_initialise(self)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.fc1(first - second), LEAK)
        return self.fc3(F.leaky_relu(self.fc2(h), LEAK))


def he_initialise(module: nn.Module) -> None:
    """He (Kaiming) initialisation for the leaky ReLUs of every convolution and linear layer, zero biases.

    The reference keeps PyTorch's default initialisation, whose gain of 1/sqrt(3) per layer shrinks the variation
    of the input through the encoder's nine layers (measured at init on phantom patches: features differing by 3e-4
    between patches). The SVDD' term, whose pull does not weaken with distance, then collapses the features before
    the position task can separate them (its loss stayed at ln 8 through the first 130 to 175 iterations at lr 1e-3
    and 1e-4).
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, a=LEAK, nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)


def encoder_macs(patch_size: int, cnum: int, feature_dim: int, in_channels: int = 1) -> int:
    """Multiply-accumulates of ``HierarchicalEncoder.window_features`` for one window of ``patch_size`` px."""
    widths = [in_channels, cnum, 2 * cnum, 4 * cnum, 4 * cnum, 2 * cnum, cnum, cnum, feature_dim]
    side, sub_patch = SUB_PATCH, 0
    for i in range(len(widths) - 1):
        side = (side - 3) // (2 if i == 0 else 1) + 1
        sub_patch += side * side * widths[i] * widths[i + 1] * 9
    tiles = patch_size // SUB_PATCH
    levels = hierarchy_levels(patch_size)
    aggregation_cells = sum((tiles - 2**level + 1) ** 2 for level in range(1, levels + 1))
    per_cell = 4 * feature_dim * 4 * cnum + 4 * cnum * feature_dim
    extra_tiles = 0 if (patch_size // 4) % SUB_PATCH == 0 else 1  # K = 64: the centred half on its own
    return (tiles * tiles + extra_tiles) * sub_patch + aggregation_cells * per_cell
