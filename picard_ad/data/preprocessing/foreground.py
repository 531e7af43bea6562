"""The foreground mask of a cropped carrier: what stands out from it (a hand, a breast, a phantom's tissue).

Davletshina et al. segmented the hands with Photoshop's "select subject", a proprietary, manual step left out
here. This automatic stand-in thresholds the lightly smoothed crop at its Otsu level: the object is brighter than
the carrier or background around it, so the background is the darker part connected to the crop's border, and
everything else is object (dark structures inside it included; a crop the object fills has no background). It
keeps the regions at least ``min_object_fraction`` of the largest one (both hands of a two-hand image), fills
their holes and smooths the outline with a morphological closing. It works on the crop shrunk to
``detection_size`` and upsamples the mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import gaussian
from skimage.morphology import closing, disk
from skimage.transform import resize

from picard_ad.data.preprocessing.carrier import downscaled, otsu_mask


def foreground_mask(
    image: np.ndarray,
    *,
    smoothing: float = 0.01,
    min_object_fraction: float = 0.1,
    max_background_ratio: float = 0.6,
    detection_size: int = 512,
) -> np.ndarray:
    """(H, W) bool: the bright object(s) of a cropped carrier; all True for a constant image or one the object
    fills.

    Args:
        image: (H, W) float image in [0, 1].
        smoothing: radius of the closing that smooths the outline, as a fraction of the shorter side (the Otsu
            threshold is taken on the image smoothed by a Gaussian of half that radius).
        min_object_fraction: regions smaller than this fraction of the largest region are dropped.
        max_background_ratio: the darker Otsu class is background only when its mean intensity is at most this
            fraction of the brighter class's; otherwise the two classes are parts of one object that fills the
            crop (texture, bone and soft tissue), and the mask is all True.
        detection_size: longer side (pixels) of the shrunk copy the mask is found on.
    """
    small, scale = downscaled(image, detection_size)
    radius = round(smoothing * min(small.shape))
    smooth = gaussian(small, sigma=max(1.0, radius / 2), preserve_range=True)
    bright = otsu_mask(smooth)
    if bright is None or smooth[~bright].mean() > max_background_ratio * smooth[bright].mean():
        return np.ones(image.shape, dtype=bool)
    dark, _ = ndimage.label(~bright)
    border = np.unique(np.concatenate([dark[0], dark[-1], dark[:, 0], dark[:, -1]]))
    binary = ~np.isin(dark, border[border > 0])
    labels, count = ndimage.label(binary, structure=np.ones((3, 3)))
    if count == 0:
        return np.ones(image.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= min_object_fraction * sizes.max()
    keep[0] = False
    mask = ndimage.binary_fill_holes(keep[labels])
    if radius >= 1:
        # pad so the closing does not glue the object to the image border
        padded = np.pad(mask, radius)
        mask = closing(padded, disk(radius))[radius:-radius, radius:-radius]
        mask = ndimage.binary_fill_holes(mask)
    if scale == 1.0:
        return mask
    return resize(mask.astype(np.float32), image.shape, order=1, anti_aliasing=False) >= 0.5
