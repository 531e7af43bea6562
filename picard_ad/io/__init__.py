"""Readers, writers and annotations for medical image formats.

Readers: :func:`read_image` / :func:`iter_slices` return 2D slices as float32 in [0, 1] with metadata,
:func:`read_header` describes a file without decoding it, :func:`read_mask` reads label images.
"""

from picard_ad.io.base import (
    SUPPORTED_SUFFIXES,
    ImageHeader,
    ImageMeta,
    ScanImage,
    SliceOrigin,
    find_images,
    iter_slices,
    read_header,
    read_image,
    read_mask,
)
from picard_ad.io.orientation import Orientation, detect_breast_side

__all__ = [
    "SUPPORTED_SUFFIXES",
    "ImageHeader",
    "ImageMeta",
    "Orientation",
    "ScanImage",
    "SliceOrigin",
    "detect_breast_side",
    "find_images",
    "iter_slices",
    "read_header",
    "read_image",
    "read_mask",
]
