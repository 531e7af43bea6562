"""Histogram equalization, global or adaptive (CLAHE), restricted to the foreground (scikit-image's functions).

Davletshina et al. equalize the histogram of the preprocessed hands and find it helps the autoencoders (their
Table 1, "w/ HE"). Global equalization counts only the foreground's pixels (``equalize_hist`` with a mask), so the
background's zeros do not flatten the object's contrast; CLAHE (``equalize_adapthist``) has no mask and sees the
whole image. Either way the background is set back to 0 afterwards.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from skimage.exposure import equalize_adapthist, equalize_hist

Equalization = Literal["none", "global", "clahe"]


def clahe_kernel_size(shape: tuple[int, int], fraction: float) -> tuple[int, int]:
    """CLAHE's tile size (rows, cols) in pixels: ``fraction`` of each side, at least 2 pixels."""
    return max(2, round(shape[0] * fraction)), max(2, round(shape[1] * fraction))


def equalize(
    image: np.ndarray,
    kind: Equalization,
    mask: np.ndarray | None = None,
    *,
    bins: int = 256,
    clip_limit: float = 0.01,
    kernel_fraction: float = 0.125,
) -> np.ndarray:
    """The image with its histogram equalized: (H, W) float32 in [0, 1], 0 outside ``mask``.

    Args:
        image: (H, W) float image in [0, 1].
        kind: "none" (the image unchanged, 0 outside the mask), "global" or "clahe".
        mask: (H, W) bool foreground; None: every pixel. An empty mask leaves the image unchanged.
        bins: histogram bins.
        clip_limit: CLAHE's contrast limit in (0, 1] (scikit-image's normalised clip limit).
        kernel_fraction: CLAHE's tile side as a fraction of the image's side.
    """
    pixels = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)  # resampling may overshoot by a rounding error
    inside = np.ones(pixels.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if kind == "none" or not inside.any() or float(pixels[inside].max()) <= float(pixels[inside].min()):
        return np.where(inside, pixels, 0.0).astype(np.float32)
    if kind == "global":
        result = equalize_hist(pixels, nbins=bins, mask=None if mask is None else inside)
    elif kind == "clahe":
        result = equalize_adapthist(pixels, kernel_size=clahe_kernel_size(pixels.shape, kernel_fraction),
                                    clip_limit=clip_limit, nbins=bins)  # fmt: skip
    else:
        raise ValueError(f"equalization must be 'none', 'global' or 'clahe', got {kind!r}")
    return np.where(inside, np.clip(result, 0.0, 1.0), 0.0).astype(np.float32)
