"""Tissue (foreground) masks derived from the image, so metrics and window skipping can ignore background."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def tissue_mask(image: np.ndarray, threshold: float = 0.02, min_fraction: float = 0.001) -> np.ndarray:
    """Boolean (H, W) mask of pixels that belong to the imaged object rather than the background.

    Args:
        image: (H, W) float image in [0, 1] with a dark background (as readers return it).
        threshold: intensity above which a pixel may be tissue, in [0, 1] units.
        min_fraction: connected regions smaller than this fraction of the image (labels, noise specks) are
            dropped; holes inside tissue (dark fat, vessels' shadows) are filled.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    mask = image > threshold
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        keep = sizes >= max(1, min_fraction * image.size)
        mask = keep[labels]
    return ndimage.binary_fill_holes(mask)
