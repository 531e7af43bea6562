"""Ellipse / ellipsoid regions placed inside tissue, with a soft rim, for the synthetic anomalies.

A region is the set of pixels whose normalised ellipsoid radius ``rho`` (0 at the centre, 1 on the outline) is
small enough; its blending weight ``alpha`` is 1 in the core and falls to 0 at ``rho = 1`` along a raised
cosine ``edge`` wide (in rho units). The anomaly mask is where ``alpha >= MASK_ALPHA``, and alpha is set to 0
everywhere else, so an anomaly never touches a pixel outside its mask. Works for any number of dimensions; the
synthetic anomalies use 2-D images (H, W) and 3-D volumes (D, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Blending weight below which a pixel counts as untouched (1 % of the full effect).
MASK_ALPHA = 0.01


@dataclass(frozen=True)
class Region:
    """One ellipsoidal region of an image.

    Attributes:
        centre: integer index of the centre pixel, one entry per image axis.
        semi_axes_px: semi-axis lengths in pixels, the longest first.
        rotation: (ndim, ndim) orthonormal matrix whose rows are the semi-axis directions in image axes.
        edge: width of the soft rim in rho units (0 = hard edge), at most 0.5.
        window: slices of the image holding the whole region (its bounding box).
        rho: float64 array of the window's shape, the normalised ellipsoid radius of each pixel.
    """

    centre: tuple[int, ...]
    semi_axes_px: tuple[float, ...]
    rotation: np.ndarray
    edge: float
    window: tuple[slice, ...]
    rho: np.ndarray

    @property
    def mask_rho(self) -> float:
        """Largest rho at which alpha is still >= MASK_ALPHA."""
        if self.edge == 0.0:
            return 1.0
        return 1.0 - self.edge + self.edge * float(np.arccos(2.0 * MASK_ALPHA - 1.0)) / np.pi

    @property
    def mask(self) -> np.ndarray:
        """Boolean array of the window's shape: the anomaly's pixels."""
        return self.rho <= self.mask_rho

    @property
    def alpha(self) -> np.ndarray:
        """Blending weight over the window: 1 in the core, raised-cosine rim, exactly 0 outside the mask."""
        if self.edge == 0.0:
            return self.mask.astype(np.float64)
        ramp = np.clip((self.rho - (1.0 - self.edge)) / self.edge, 0.0, 1.0)
        return np.where(self.mask, 0.5 * (1.0 + np.cos(np.pi * ramp)), 0.0)

    def full_mask(self, shape: tuple[int, ...]) -> np.ndarray:
        """Boolean mask of the whole image of ``shape`` with this region's pixels set."""
        mask = np.zeros(shape, dtype=bool)
        mask[self.window] = self.mask
        return mask

    def info(self) -> dict:
        """JSON-ready geometry: centre, semi-axes, rotation and the mask's radius (along the longest axis)."""
        return {
            "centre": [int(c) for c in self.centre],
            "semi_axes_px": [float(a) for a in self.semi_axes_px],
            "rotation": [[float(v) for v in row] for row in self.rotation],
            "mask_radius_px": float(self.semi_axes_px[0] * self.mask_rho),
        }


def random_rotation(ndim: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random (ndim, ndim) rotation matrix (QR of a Gaussian matrix with the sign fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[0] = -q[0]
    return q


def tissue_depth(tissue: np.ndarray) -> np.ndarray:
    """Euclidean distance in pixels from each tissue pixel to the nearest non-tissue pixel or beyond the image.

    Args:
        tissue: bool array (2-D or 3-D), True on tissue.

    Returns:
        float64 array of the same shape, 0 outside tissue. A region whose longest semi-axis is smaller than the
        depth at its centre lies entirely inside tissue and inside the image.
    """
    padded = np.pad(tissue, 1, constant_values=False)
    depth = ndimage.distance_transform_edt(padded)
    return depth[tuple(slice(1, -1) for _ in range(tissue.ndim))]


def draw_semi_major(depth: np.ndarray, low_px: float, high_px: float, rng: np.random.Generator) -> float:
    """Draw a semi-major axis uniformly from [low_px, high_px], capped so that the region fits in ``depth``.

    Raises:
        ValueError: no region of ``low_px`` fits: the deepest tissue point is too close to the tissue's border.
    """
    deepest = float(depth.max())
    # Depths are square roots of integers; staying half a pixel below the deepest one leaves room to place it.
    high = min(high_px, deepest - 0.5)
    if high < low_px:
        raise ValueError(
            f"tissue too small for an anomaly: its deepest point is {deepest:.1f} px from its border, "
            f"the smallest anomaly (radius {low_px:.1f} px) needs {low_px + 0.5:.1f} px"
        )
    return float(rng.uniform(low_px, high))


def deep_centre(depth: np.ndarray, reach_px: float, rng: np.random.Generator, what: str) -> tuple[int, ...]:
    """Random pixel index whose depth exceeds ``reach_px``; ValueError naming ``what`` if there is none."""
    candidates = np.flatnonzero(depth > reach_px)
    if candidates.size == 0:
        raise ValueError(f"{what} too small for an anomaly reaching {reach_px:.1f} px from its centre")
    return tuple(int(c) for c in np.unravel_index(int(candidates[rng.integers(candidates.size)]), depth.shape))


def place_region(
    depth: np.ndarray,
    semi_axes_px: tuple[float, ...],
    rotation: np.ndarray,
    edge_px: float,
    rng: np.random.Generator,
) -> Region:
    """Place an ellipsoid at a random centre where it lies entirely inside tissue.

    Args:
        depth: tissue depth map from ``tissue_depth`` (2-D or 3-D).
        semi_axes_px: semi-axis lengths in pixels, the longest first; one per image axis.
        rotation: (ndim, ndim) orthonormal matrix, rows are the semi-axis directions.
        edge_px: soft rim width in pixels (0 = hard edge); capped at half the shortest semi-axis.
        rng: random source for the centre.

    Raises:
        ValueError: no centre is deep enough inside the tissue.
    """
    reach = max(semi_axes_px)
    centre = deep_centre(depth, reach, rng, "tissue")
    # Integer offsets inside the ellipsoid are at most floor(reach) from the centre, and depth > reach keeps
    # that box inside the image (the depth counts the pixels beyond the border as background).
    half = int(np.floor(reach))
    window = tuple(slice(c - half, c + half + 1) for c in centre)
    offsets = np.stack(np.meshgrid(*[np.arange(-half, half + 1)] * depth.ndim, indexing="ij")).astype(np.float64)
    along_axes = np.tensordot(rotation, offsets, axes=1)
    scales = np.asarray(semi_axes_px, dtype=np.float64).reshape((-1,) + (1,) * depth.ndim)
    rho = np.sqrt(((along_axes / scales) ** 2).sum(0))
    edge = min(edge_px / min(semi_axes_px), 0.5)
    return Region(centre, tuple(float(a) for a in semi_axes_px), rotation, edge, window, rho)
