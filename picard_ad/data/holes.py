"""Training hole masks of the PICARD completion network (reference ``random_bbox`` + ``bbox2mask``).

One square box of side ``hole_size`` is placed anywhere in the patch, shared by the whole batch (the local critic
crops that box); each sample's hole is the box shrunk by its own random 0..``max_shrink`` px per side, so holes
are between ``hole_size - 2 * max_shrink`` and ``hole_size`` px on each side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class HoleBatch:
    """Hole masks of a batch and the un-shrunk box they lie in.

    mask: (N, 1, H, W) float32, 1 inside the hole, 0 on known pixels.
    bbox: (top, left, height, width) in pixels of the un-shrunk box, the same for every sample.
    """

    mask: torch.Tensor
    bbox: tuple[int, int, int, int]


def _check_geometry(patch_size: int, hole_size: int, max_shrink: int) -> None:
    if not 0 < hole_size <= patch_size:
        raise ValueError(f"hole_size must be in 1..patch_size ({patch_size}), got {hole_size}")
    if max_shrink < 0 or 2 * max_shrink >= hole_size:
        raise ValueError(f"max_shrink must be in 0..{(hole_size - 1) // 2} for hole_size {hole_size}, got {max_shrink}")


def sample_hole_masks(
    batch_size: int, patch_size: int, hole_size: int, max_shrink: int, rng: np.random.Generator
) -> HoleBatch:
    """Random training holes: one box position per batch, one random shrink per side per sample.

    Args:
        batch_size: N.
        patch_size: side of the square patches, px.
        hole_size: side of the un-shrunk box, px.
        max_shrink: largest shrink of each side, px (reference: 16 for a 128 px box).
        rng: the generator every draw comes from (its state makes the masks reproducible).
    """
    _check_geometry(patch_size, hole_size, max_shrink)
    top, left = (int(v) for v in rng.integers(0, patch_size - hole_size + 1, size=2))
    shrink = rng.integers(0, max_shrink + 1, size=(batch_size, 2))
    mask = np.zeros((batch_size, 1, patch_size, patch_size), dtype=np.float32)
    for sample, (shrink_rows, shrink_cols) in enumerate(shrink):
        mask[
            sample,
            0,
            top + shrink_rows : top + hole_size - shrink_rows,
            left + shrink_cols : left + hole_size - shrink_cols,
        ] = 1.0
    return HoleBatch(torch.from_numpy(mask), (top, left, hole_size, hole_size))


def centred_hole_masks(batch_size: int, patch_size: int, hole_size: int) -> HoleBatch:
    """The test-time hole: the centred box of side ``hole_size``, unshrunk, for every sample."""
    _check_geometry(patch_size, hole_size, 0)
    start = (patch_size - hole_size) // 2
    mask = torch.zeros(batch_size, 1, patch_size, patch_size)
    mask[:, :, start : start + hole_size, start : start + hole_size] = 1.0
    return HoleBatch(mask, (start, start, hole_size, hole_size))
