"""Trivial reference heatmaps that every benchmark reports beside real methods.

A method whose pixel AUROC does not beat these does not localize anomalies: on mammograms a plain brightness map
already reaches a high whole-image pixel AUROC because lesions are bright and background pixels are dark.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def brightness_map(image: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """Gaussian-smoothed intensity; image (H, W) float in [0, 1], sigma in pixels; returns float32 (H, W)."""
    return ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), sigma=sigma)


def local_contrast_map(image: np.ndarray, fine_sigma: float = 4.0, coarse_sigma: float = 32.0) -> np.ndarray:
    """Fine minus coarse Gaussian smoothing (a difference of Gaussians): bright blobs on their surroundings."""
    image = np.asarray(image, dtype=np.float32)
    fine = ndimage.gaussian_filter(image, sigma=fine_sigma)
    coarse = ndimage.gaussian_filter(image, sigma=coarse_sigma)
    return fine - coarse
