"""The training pairs of Patch SVDD, cut from tissue of normal images: reproducible and resumable.

Two kinds of pairs (Yi and Yoon 2020, Sec. 3; the reference's ``codes/datasets.py``), each at a patch side s:

- relative position (the self-supervised task): a patch and one of its 8 neighbours, label 0..7 in the order of
  ``POSITION_OFFSETS``; along each axis with a non-zero direction the neighbour lies 3s/4 + u px away, u uniform in
  0..s/4 - 1 (so the two patches overlap by 1..s/4 px or touch), both patches shifted in intensity and noised;
- SVDD' (the feature pull): a patch and a copy moved by -s/32..s/32 px along each axis, not both zero.

Each pair comes from a region of side 2K (K, the largest side) drawn by ``PatchSampler`` (tissue patches of
normal images, visited in a shuffled order); the pair is placed inside the region without clipping, so a label is
always the true direction (the reference clips at the image border, which can move the neighbour off its
direction). Every patch of a pair must hold ``min_tissue_fraction`` tissue: never a blank patch. Everything random
comes from one numpy generator plus the region sampler, so ``state_dict`` / ``load_state_dict`` continue the pair
sequence exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from picard_ad.data.patches import ImageEntry, PatchSampler
from picard_ad.errors import InputError
from picard_ad.methods.patchsvdd.networks import N_POSITIONS

POSITION_OFFSETS: tuple[tuple[int, int], ...] = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
"""(row, column) direction of the neighbour for each relative-position label (the reference's ``pos_to_diff``)."""
PLACEMENT_TRIES = 16  # placements of a pair tried in one region before another region is drawn
REGION_TRIES = 100  # regions tried for one pair before the images are declared too sparse in tissue

assert len(POSITION_OFFSETS) == N_POSITIONS


@dataclass(frozen=True, eq=False)
class PatchPairs:
    """A batch of pairs: first and second (N, s, s) float32 in [0, 1] units (position pairs noised, so slightly
    outside); labels (N,) int64 relative-position labels, None for SVDD' pairs; offsets (N, 2) int64, the second
    patch's origin minus the first's, px."""

    first: np.ndarray
    second: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray | None = None


class PairSampler:
    """Draws relative-position and SVDD' pairs of patches from tissue regions of images.

    Args:
        images: the images to sample, e.g. from ``list_training_images``.
        patch_size: K, the largest patch side of the pairs; regions are 2K px.
        seed, stream: fix the whole pair sequence (``stream``: ranks, validation).
        tissue_threshold: intensity in [0, 1] above which a pixel counts as tissue.
        min_tissue_fraction: fraction of every patch (and region) that must be tissue, in (0, 1].
        noise_std: std of the per-patch intensity shift and per-pixel noise of position pairs, [0, 1] units.
        pool_size, patches_per_visit, num_workers, source: as for ``PatchSampler``.
    """

    def __init__(
        self,
        images: Sequence[ImageEntry],
        patch_size: int,
        *,
        seed: int,
        stream: int,
        tissue_threshold: float,
        min_tissue_fraction: float,
        noise_std: float,
        pool_size: int = 16,
        patches_per_visit: int = 16,
        num_workers: int = 0,
        source: str | Path | None = None,
    ):
        self.patch_size = patch_size
        self.tissue_threshold = tissue_threshold
        self.min_tissue_fraction = min_tissue_fraction
        self.noise_std = noise_std
        self.regions = PatchSampler(
            images, 2 * patch_size, seed=seed, stream=stream, tissue_threshold=tissue_threshold,
            min_tissue_fraction=min_tissue_fraction, pool_size=pool_size, patches_per_visit=patches_per_visit,
            num_workers=num_workers, source=source,
        )  # fmt: skip
        self.rng = np.random.default_rng((seed, stream, 7))

    def position_pairs(self, n: int, side: int) -> PatchPairs:
        """``n`` relative-position pairs of ``side`` px patches, noised; labels index ``POSITION_OFFSETS``."""
        labels = self.rng.integers(N_POSITIONS, size=n)
        directions = np.asarray(POSITION_OFFSETS)[labels]
        distances = 3 * side // 4 + self.rng.integers(side // 4, size=(n, 2))
        first, second, offsets = self._cut(directions * distances, side)
        return PatchPairs(self._noised(first), self._noised(second), offsets, labels.astype(np.int64))

    def svdd_pairs(self, n: int, side: int) -> PatchPairs:
        """``n`` SVDD' pairs of ``side`` px patches: the second moved by up to side/32 px per axis, never 0."""
        jitter = max(1, side // 32)
        offsets = np.zeros((n, 2), dtype=np.int64)
        for i in range(n):
            while not offsets[i].any():
                offsets[i] = self.rng.integers(-jitter, jitter + 1, size=2)
        first, second, offsets = self._cut(offsets, side)
        return PatchPairs(first, second, offsets)

    def _cut(self, offsets: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patches at (origin, origin + offset) of fresh regions, origins drawn so both lie inside and hold tissue."""
        if side > self.patch_size or np.abs(offsets).max(initial=0) >= side:
            raise ValueError(
                f"cannot place {side} px patches {np.abs(offsets).max()} px apart in {2 * self.patch_size} px "
                f"regions (sides up to {self.patch_size} px, less than a side apart)"
            )
        first = np.empty((len(offsets), side, side), dtype=np.float32)
        second = np.empty_like(first)
        min_pixels = max(1, math.ceil(self.min_tissue_fraction * side * side))
        for i, offset in enumerate(offsets):
            for _ in range(REGION_TRIES):
                pair = self._place(self.regions.sample(1)[0], offset, side, min_pixels)
                if pair is not None:
                    first[i], second[i] = pair
                    break
            else:
                raise InputError(self.regions.source, f"{REGION_TRIES} regions in a row held no two {side} px "
                                 f"patches {np.abs(offset).max()} px apart with {self.min_tissue_fraction:g} tissue "
                                 "each: lower min_tissue_fraction")  # fmt: skip
        return first, second, np.asarray(offsets, dtype=np.int64)

    def _place(
        self, region: np.ndarray, offset: np.ndarray, side: int, min_pixels: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        span = region.shape[0] - side
        low, high = np.maximum(0, -offset), span - np.maximum(0, offset)
        for _ in range(PLACEMENT_TRIES):
            top, left = (int(self.rng.integers(lo, hi + 1)) for lo, hi in zip(low, high))
            patches = [
                region[r : r + side, c : c + side] for r, c in ((top, left), (top + offset[0], left + offset[1]))
            ]
            if all(np.count_nonzero(patch > self.tissue_threshold) >= min_pixels for patch in patches):
                return patches[0], patches[1]
        return None

    def _noised(self, patches: np.ndarray) -> np.ndarray:
        if self.noise_std == 0.0:
            return patches
        shift = self.rng.normal(scale=self.noise_std, size=(len(patches), 1, 1))
        noise = self.rng.normal(scale=self.noise_std, size=patches.shape)
        return (patches + shift + noise).astype(np.float32)

    @property
    def excluded_images(self) -> list[Path]:
        """Images left out because no region of them had enough tissue."""
        return self.regions.excluded_images

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable position of the pair sequence."""
        return {"rng": self.rng.bit_generator.state, "regions": self.regions.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``."""
        self.rng.bit_generator.state = state["rng"]
        self.regions.load_state_dict(state["regions"])

    def close(self) -> None:
        """Stop the decoding threads."""
        self.regions.close()
