"""The preprocessing chain of Davletshina et al. (2020): its settings, the steps done once per image (carrier crop
and deskew, foreground mask) and the whole chain for one image at a network's input size.

Levels (``preprocessing``), the columns of the paper's Table 1:
- ``raw``: the image as it is.
- ``crop``: the carrier's minimum-area box cut out and turned upright (``carrier``).
- ``full``: the crop, then its foreground mask (``foreground``): background set to 0; methods compute their
  losses and image scores on the mask only.
Then, at the network's input size: the image resized onto a square with its aspect ratio kept and padded
(``resize``), and histogram equalization (``equalization``), before or after a method's augmentation.

What the paper did by hand or with proprietary tools is left out: the hand-labelled SSD hand detector that split
two-hand images (no replacement: a two-hand image stays one image, both hands in the mask) and Photoshop's
"select subject" (replaced by the automatic Otsu mask of ``foreground``).

A method that uses the chain derives its settings from ``PreprocessingSettings``, so the YAML keys and flags are
the same for every method, and a benchmark varies them like any setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from picard_ad.config import check_settings, setting
from picard_ad.data.preprocessing.carrier import RotatedBox, detect_carrier
from picard_ad.data.preprocessing.equalization import equalize
from picard_ad.data.preprocessing.foreground import foreground_mask
from picard_ad.data.preprocessing.resize import Placement, resize_mask, resize_with_padding


@dataclass(frozen=True)
class PreprocessingSettings:
    """How an image is prepared for a whole-image network (Davletshina et al. 2020, section 2.1). Lengths are
    fractions of the image's sides unless said; intensities in the readers' [0, 1] units."""

    preprocessing: Literal["raw", "crop", "full"] = setting(
        "full",
        "raw (as read), crop (carrier found by Otsu and the largest contour's minimum-area box, cut out and "
        "deskewed) or full (crop, then background outside the foreground mask set to 0; losses and scores on the mask)",
    )
    deskew: bool = setting(True, "crop the carrier's minimum-area rotated box and turn it upright; off: its "
                           "axis-aligned box")  # fmt: skip
    equalization: Literal["none", "global", "clahe"] = setting(
        "global",
        "histogram equalization at the network's input size: none, global (foreground pixels only) or clahe (adaptive)",
    )
    equalization_bins: int = setting(256, "histogram bins of the equalization", ge=2)
    clahe_clip_limit: float = setting(0.01, "CLAHE contrast limit (scikit-image's normalised clip limit)",
                                      gt=0.0, le=1.0)  # fmt: skip
    clahe_kernel_fraction: float = setting(0.125, "CLAHE tile side, fraction of the image side", gt=0.0, le=1.0)
    min_carrier_fraction: float = setting(0.05, "a carrier box smaller than this fraction of the image counts as "
                                          "not found (the whole image is used)", ge=0.0, lt=1.0)  # fmt: skip
    min_object_fraction: float = setting(0.1, "foreground regions smaller than this fraction of the largest are "
                                         "dropped", ge=0.0, le=1.0)  # fmt: skip
    max_background_ratio: float = setting(0.6, "the crop's darker Otsu class is background only if its mean is at "
                                          "most this fraction of the brighter class's (else the object fills the "
                                          "crop and the mask is all of it)", ge=0.0, le=1.0)  # fmt: skip
    mask_smoothing: float = setting(0.01, "radius of the closing that smooths the foreground outline, fraction of "
                                    "the crop's shorter side", ge=0.0, lt=0.5)  # fmt: skip
    detection_size: int = setting(512, "longer side (px) of the shrunk copy the carrier and foreground are found "
                                  "on", ge=16)  # fmt: skip

    def __post_init__(self) -> None:
        check_settings(self)

    def preprocessing_settings(self) -> PreprocessingSettings:
        """Just the chain's fields (of a method's settings derived from this class)."""
        names = [field.name for field in dataclasses.fields(PreprocessingSettings)]
        return PreprocessingSettings(**{name: getattr(self, name) for name in names})


@dataclass(frozen=True, eq=False)
class Prepared:
    """An image after the steps done once (crop, deskew, mask), and the way back to the source's pixels.

    image: (h, w) float32 in [0, 1]; in ``full``, 0 outside the mask.
    mask: (h, w) bool, the pixels losses and scores count (the foreground in ``full``, else all).
    source_shape: (H, W) of the source image.
    box: the carrier box the image was cut from; None: not cropped (``raw``, or no carrier found).
    """

    image: np.ndarray
    mask: np.ndarray
    source_shape: tuple[int, int]
    box: RotatedBox | None = None

    def carrier_record(self) -> dict[str, Any] | None:
        """The carrier box as a heatmap's settings record it: {"centre", "size", "angle"}; None: not cropped."""
        if self.box is None:
            return None
        return {"centre": list(self.box.centre), "size": list(self.box.size), "angle": self.box.angle}

    def to_source(self, array: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """A map on the prepared image mapped onto the source image's pixels: (H, W) float32, ``fill`` outside
        the crop."""
        if self.box is None:
            return np.asarray(array, dtype=np.float32)
        return self.box.to_source(array, self.source_shape, fill)


def prepare(image: np.ndarray, settings: PreprocessingSettings) -> Prepared:
    """The steps of the chain done once per image: carrier crop and deskew (``crop``, ``full``), foreground mask
    (``full``). image: (H, W) float in [0, 1], dark background."""
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim != 2:
        raise ValueError(f"expected an (H, W) image, got shape {pixels.shape}")
    if settings.preprocessing == "raw":
        return Prepared(pixels, np.ones(pixels.shape, dtype=bool), pixels.shape)
    box = detect_carrier(pixels, deskew=settings.deskew, detection_size=settings.detection_size,
                         min_fraction=settings.min_carrier_fraction)  # fmt: skip
    cropped = pixels if box is None else box.crop(pixels)
    if settings.preprocessing == "crop":
        return Prepared(cropped, np.ones(cropped.shape, dtype=bool), pixels.shape, box)
    mask = foreground_mask(cropped, smoothing=settings.mask_smoothing,
                           min_object_fraction=settings.min_object_fraction,
                           max_background_ratio=settings.max_background_ratio,
                           detection_size=settings.detection_size)  # fmt: skip
    return Prepared(np.where(mask, cropped, 0.0).astype(np.float32), mask, pixels.shape, box)


def equalize_with(image: np.ndarray, mask: np.ndarray | None, settings: PreprocessingSettings) -> np.ndarray:
    """The chain's histogram equalization of an image (its foreground ``mask``): (H, W) float32, 0 off the mask."""
    return equalize(image, settings.equalization, mask, bins=settings.equalization_bins,
                    clip_limit=settings.clahe_clip_limit, kernel_fraction=settings.clahe_kernel_fraction)  # fmt: skip


@dataclass(frozen=True, eq=False)
class Preprocessed:
    """An image through the whole chain at a network's input size.

    image: (size, size) float32 network input in [0, 1], 0 in the padding and (``full``) the background.
    mask: (size, size) bool, the pixels that count (mask of ``Prepared`` resized, padding excluded).
    prepared: the image after the steps done once.
    placement: where the prepared image lies on the canvas.
    """

    image: np.ndarray
    mask: np.ndarray
    prepared: Prepared
    placement: Placement

    def to_source(self, canvas: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """A (size, size) map on the network input mapped onto the source image: (H, W) float32."""
        return self.prepared.to_source(self.placement.to_source(canvas), fill)


def network_mask(prepared: Prepared, placement: Placement) -> np.ndarray:
    """(size, size) bool: the prepared mask at the network's input size, False in the padding."""
    mask = np.zeros((placement.size, placement.size), dtype=bool)
    mask[: placement.rows, : placement.cols] = resize_mask(prepared.mask, (placement.rows, placement.cols))
    return mask


def equalize_canvas(canvas: np.ndarray, mask: np.ndarray, placement: Placement,
                    settings: PreprocessingSettings) -> np.ndarray:  # fmt: skip
    """A network input with its image part (not the padding) equalized on ``mask``: (size, size) float32."""
    content = equalize_with(placement.content(canvas), placement.content(mask), settings)
    return placement.place(content)


def preprocess(image: np.ndarray, settings: PreprocessingSettings, size: int) -> Preprocessed:
    """The whole chain without augmentation: prepare, resize onto a ``size`` square with padding, equalize.

    image: (H, W) float in [0, 1], dark background; size: the network's input side, pixels.
    """
    prepared = prepare(image, settings)
    canvas, placement = resize_with_padding(prepared.image, size)
    mask = network_mask(prepared, placement)
    return Preprocessed(equalize_canvas(canvas, mask, placement, settings), mask, prepared, placement)
