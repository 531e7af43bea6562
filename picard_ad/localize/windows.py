"""Sliding-window geometry: where the windows lie, which of them see tissue, and cutting them out.

A window is a ``patch_size`` square lying fully inside the image (no padding: a padded border would put an
artificial edge inside windows at the chest wall, which the network never saw in training). Its centred
``mask_size`` square is the region the network completes and the window's score describes. Origins step by
``stride`` from 0; when ``(H - patch_size)`` is not a multiple of the stride, a last window row flush with the
bottom edge is added (the same for columns), so every pixel lies inside some window. Windows are indexed
row-major: ``index = row * n_cols + col``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from picard_ad.errors import ConfigError, InputError


def _axis_origins(length: int, patch_size: int, stride: int) -> tuple[int, ...]:
    last = length - patch_size
    origins = list(range(0, last + 1, stride))
    if origins[-1] != last:
        origins.append(last)
    return tuple(origins)


@dataclass(frozen=True)
class WindowGrid:
    """Top-left corners of the windows covering an image, plus the window and mask sizes (all in pixels).

    Build it with :meth:`WindowGrid.cover`; direct construction is checked for consistency.
    """

    image_shape: tuple[int, int]
    patch_size: int
    mask_size: int
    stride: int
    row_origins: tuple[int, ...]
    col_origins: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_sizes(self.patch_size, self.mask_size, self.stride)
        height, width = self.image_shape
        for name, origins, length in (("row", self.row_origins, height), ("col", self.col_origins, width)):
            steps = np.diff(origins)
            if not origins or np.any(steps <= 0):
                raise ValueError(f"{name}_origins must be a non-empty increasing sequence, got {origins}")
            if origins[0] < 0 or origins[-1] + self.patch_size > length:
                raise ValueError(f"{name}_origins {origins} put a {self.patch_size}-pixel window outside {length}")

    @classmethod
    def cover(
        cls,
        image_shape: tuple[int, int],
        patch_size: int,
        mask_size: int,
        stride: int,
        *,
        path: str | Path | None = None,
    ) -> WindowGrid:
        """The grid of windows covering every pixel of an image.

        Args:
            image_shape: (H, W) of the image in pixels.
            patch_size: side of a window in pixels.
            mask_size: side of the centred masked square in pixels; same parity as ``patch_size`` so the mask is
                exactly centred.
            stride: step between window origins in pixels (the last row/column may be closer, flush with the edge).
            path: the image's file, named in the error when the image is smaller than a window.

        Raises:
            InputError: the image is smaller than a window on either side (message names ``path`` when given;
                without it, re-raise with ``InputError(path, exc.problem)``).
            ConfigError: impossible patch/mask/stride.
        """
        _check_sizes(patch_size, mask_size, stride)
        height, width = (int(side) for side in image_shape)
        if height < patch_size or width < patch_size:
            raise InputError(
                path,
                f"image is {height} x {width} pixels, smaller than the {patch_size} x {patch_size} sliding window; "
                f"use a --patch-size of at most {min(height, width)} (with a model trained at that size)",
            )
        return cls(
            image_shape=(height, width),
            patch_size=patch_size,
            mask_size=mask_size,
            stride=stride,
            row_origins=_axis_origins(height, patch_size, stride),
            col_origins=_axis_origins(width, patch_size, stride),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(n_rows, n_cols) of the window grid."""
        return len(self.row_origins), len(self.col_origins)

    @property
    def n_windows(self) -> int:
        """Number of windows in the grid."""
        return len(self.row_origins) * len(self.col_origins)

    @property
    def mask_offset(self) -> int:
        """Distance in pixels from a window's top-left corner to its mask's top-left corner."""
        return (self.patch_size - self.mask_size) // 2

    def origin(self, index: int) -> tuple[int, int]:
        """(row, col) image coordinates of the top-left pixel of window ``index`` (row-major)."""
        if not 0 <= index < self.n_windows:
            raise IndexError(f"window index {index} outside 0..{self.n_windows - 1}")
        grid_row, grid_col = divmod(int(index), len(self.col_origins))
        return self.row_origins[grid_row], self.col_origins[grid_col]

    def mask_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel where each window's score is registered: (row_centres (n_rows,), col_centres (n_cols,)) float64.

        That pixel is ``origin + patch_size // 2``: the exact mask centre for odd sizes and, for even sizes,
        the pixel just below/right of the centre, which lies between four pixels (the reference's convention,
        32 i + 128 for 256-pixel windows).
        """
        half = self.patch_size // 2
        rows = np.asarray(self.row_origins, dtype=np.float64) + half
        cols = np.asarray(self.col_origins, dtype=np.float64) + half
        return rows, cols

    def coverage(self, footprint: Literal["mask", "patch"] = "mask") -> tuple[np.ndarray, np.ndarray]:
        """Which pixels each window row / column covers: (rows (H, n_rows), cols (W, n_cols)) bool.

        ``rows[i, j]`` is True when image row i lies in the footprint (mask region or whole patch) of window row j;
        the footprint of window (j, k) is then the outer product ``rows[:, j] * cols[:, k]``.
        """
        if footprint not in ("mask", "patch"):
            raise ValueError(f"footprint must be 'mask' or 'patch', got {footprint!r}")
        offset, size = (self.mask_offset, self.mask_size) if footprint == "mask" else (0, self.patch_size)
        height, width = self.image_shape
        rows = _axis_coverage(self.row_origins, offset, size, height)
        cols = _axis_coverage(self.col_origins, offset, size, width)
        return rows, cols

    def mask_box(self, index: int) -> tuple[int, int, int, int]:
        """(row0, row1, col0, col1) end-exclusive image coordinates of window ``index``'s centred mask."""
        row, col = self.origin(index)
        offset = self.mask_offset
        return row + offset, row + offset + self.mask_size, col + offset, col + offset + self.mask_size


def _check_sizes(patch_size: int, mask_size: int, stride: int) -> None:
    if patch_size < 1:
        raise ConfigError(f"patch size must be at least 1 pixel, got {patch_size}")
    if not 1 <= mask_size <= patch_size:
        raise ConfigError(f"mask size must be between 1 and the patch size ({patch_size}), got {mask_size}")
    if (patch_size - mask_size) % 2:
        raise ConfigError(
            f"mask size ({mask_size}) and patch size ({patch_size}) must be both even or both odd "
            "so the mask is exactly centred"
        )
    if stride < 1:
        raise ConfigError(f"stride must be at least 1 pixel, got {stride}")


def _axis_coverage(origins: tuple[int, ...], offset: int, size: int, length: int) -> np.ndarray:
    starts = np.asarray(origins)[None, :] + offset
    pixels = np.arange(length)[:, None]
    return (pixels >= starts) & (pixels < starts + size)


def tissue_windows(grid: WindowGrid, tissue_mask: np.ndarray, min_tissue_fraction: float = 0.0) -> np.ndarray:
    """Which windows to score: bool (n_rows, n_cols), True where the tissue fraction of the window's mask
    region exceeds ``min_tissue_fraction`` (with 0.0, windows whose masked centre is pure background are skipped).

    Args:
        grid: the window grid of the image.
        tissue_mask: (H, W) bool, True on tissue.
        min_tissue_fraction: in [0, 1); a window is kept when its mask region's tissue fraction is strictly larger.
    """
    tissue_mask = np.asarray(tissue_mask, dtype=bool)
    if tissue_mask.shape != grid.image_shape:
        raise ValueError(f"tissue mask shape {tissue_mask.shape} does not match the image shape {grid.image_shape}")
    if not 0.0 <= min_tissue_fraction < 1.0:
        raise ValueError(f"min_tissue_fraction must be in [0, 1), got {min_tissue_fraction}")
    rows, cols = grid.coverage("mask")
    # float32 sums of 0/1 products are exact counts while mask_size**2 < 2**24 (masks under 4096 pixels)
    tissue_pixels = rows.T.astype(np.float32) @ (tissue_mask.astype(np.float32) @ cols.astype(np.float32))
    return tissue_pixels > min_tissue_fraction * grid.mask_size**2


def extract_windows(image: np.ndarray, grid: WindowGrid, indices: np.ndarray) -> np.ndarray:
    """Cut windows out of an image: (K, patch_size, patch_size) float32.

    Args:
        image: (H, W) image, any real dtype (converted to float32), in the intensity units the caller uses.
        grid: the window grid of the image.
        indices: (K,) int row-major window indices.
    """
    image = np.asarray(image)
    if image.shape != grid.image_shape:
        raise ValueError(f"image shape {image.shape} does not match the grid's image shape {grid.image_shape}")
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
        raise ValueError(f"indices must be a 1-D integer array, got shape {indices.shape} and dtype {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= grid.n_windows):
        raise IndexError(f"window indices must lie in 0..{grid.n_windows - 1}, got {indices.min()}..{indices.max()}")
    grid_rows, grid_cols = np.divmod(indices.astype(np.int64), len(grid.col_origins))
    rows = np.asarray(grid.row_origins, dtype=np.int64)[grid_rows]
    cols = np.asarray(grid.col_origins, dtype=np.int64)[grid_cols]
    views = sliding_window_view(image.astype(np.float32, copy=False), (grid.patch_size, grid.patch_size))
    return np.ascontiguousarray(views[rows, cols])
