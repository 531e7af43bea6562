"""Davletshina et al.'s (2020) radiograph preprocessing as a reusable chain: carrier detection (Otsu, the largest
contour's minimum-area rotated box), crop and deskew, a foreground mask, histogram equalization (global or CLAHE)
and aspect-preserving resize with padding, each mappable back onto the source image.

Modules, by idea: ``carrier`` (the box, its crop and the map back), ``foreground`` (the automatic foreground
mask), ``equalization``, ``resize`` (square canvas with padding) and ``chain`` (the settings and the steps
together). Built on scikit-image (``pyproject.toml`` says why).
"""

from picard_ad.data.preprocessing.carrier import RotatedBox, detect_carrier, min_area_rectangle
from picard_ad.data.preprocessing.chain import (
    Prepared,
    Preprocessed,
    PreprocessingSettings,
    equalize_canvas,
    equalize_with,
    network_mask,
    prepare,
    preprocess,
)
from picard_ad.data.preprocessing.equalization import clahe_kernel_size, equalize
from picard_ad.data.preprocessing.foreground import foreground_mask
from picard_ad.data.preprocessing.resize import Placement, resize_bilinear, resize_mask, resize_with_padding

__all__ = [
    "Placement",
    "Prepared",
    "Preprocessed",
    "PreprocessingSettings",
    "RotatedBox",
    "clahe_kernel_size",
    "detect_carrier",
    "equalize",
    "equalize_canvas",
    "equalize_with",
    "foreground_mask",
    "min_area_rectangle",
    "network_mask",
    "prepare",
    "preprocess",
    "resize_bilinear",
    "resize_mask",
    "resize_with_padding",
]
