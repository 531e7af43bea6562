"""Breast laterality from pixels, and the horizontal flip that left-aligns an image and maps results back.

Rule of :func:`detect_breast_side` (tested on the CBIS-DDSM and CDD-CESM mammograms, 28 of 28 correct):

1. Tissue pixels are those above ``p1 + 0.1 * (p99 - p1)`` (percentiles of the image), so the rule needs bright
   tissue on a dark background, which is what the readers return.
2. Each column's *coverage* is its fraction of tissue pixels. Leading and trailing columns with coverage of at
   most 1 % are dropped: black padding (CDD-CESM pads both sides) and the odd bright label pixel do not count.
3. The breast touches the side whose band (5 % of the remaining width) has the higher mean coverage: the chest
   wall fills its band over the whole height, while the skin line on the other side only clips the band near the
   nipple. Coverage rather than mean brightness keeps a bright skin rim (contrast-enhanced images) or a dense
   lesion near the nipple from winning. Ties, including an empty image, give "L", as in the Duke DBT loader.

The Duke DBT loader compared the single outermost columns and rotated views by 180 degrees when they disagreed
with the view name; picard-ad flips horizontally only, and records the flip so that it can be undone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

TISSUE_LEVEL = 0.1  # fraction of the p1..p99 range above which a pixel counts as tissue
EMPTY_COLUMN_COVERAGE = 0.01  # columns at the sides with at most this tissue fraction are padding
BAND_FRACTION = 0.05  # band width as a fraction of the non-empty width
_MAX_SIDE = 1024  # detection runs on a strided copy at most this large per axis; bands stay several pixels wide


def detect_breast_side(pixels: np.ndarray) -> Literal["L", "R"]:
    """Return the image edge the breast (bright region) touches: "L" (left, column 0) or "R" (right).

    Args:
        pixels: (H, W) array, any real dtype, tissue bright and background dark (as returned by ``read_image``).
    """
    image = np.asarray(pixels)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"expected a non-empty (H, W) image, got shape {image.shape}")
    step = max(1, -(-max(image.shape) // _MAX_SIDE))
    image = image[::step, ::step].astype(np.float32, copy=False)
    low, high = np.percentile(image, [1, 99])
    tissue = image > low + TISSUE_LEVEL * (high - low)
    coverage = tissue.mean(axis=0)
    occupied = np.flatnonzero(coverage > EMPTY_COLUMN_COVERAGE)
    if occupied.size == 0:
        return "L"
    start, stop = occupied[0], occupied[-1] + 1
    band = max(1, round(BAND_FRACTION * (stop - start)))
    left = coverage[start : start + band].mean()
    right = coverage[stop - band : stop].mean()
    return "L" if left >= right else "R"


@dataclass(frozen=True)
class Orientation:
    """How an image was re-oriented after reading; ``apply`` maps original -> aligned, ``undo`` the reverse."""

    flip_horizontal: bool = False

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Map an (H, W) or (..., H, W) array from the stored orientation to the aligned one (a view)."""
        return self._flip(array)

    def undo(self, array: np.ndarray) -> np.ndarray:
        """Map an (H, W) or (..., H, W) array from the aligned orientation back to the stored one (a view)."""
        return self._flip(array)

    def _flip(self, array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        if array.ndim < 2:
            raise ValueError(f"expected an array of at least 2 dimensions (..., H, W), got shape {array.shape}")
        # A horizontal flip is its own inverse, so apply and undo share it.
        return array[..., ::-1] if self.flip_horizontal else array

    def to_dict(self) -> dict[str, Any]:
        return {"flip_horizontal": self.flip_horizontal}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Orientation:
        unknown = set(data) - {"flip_horizontal"}
        if unknown:
            raise ValueError(f"unknown orientation keys {sorted(unknown)}; expected 'flip_horizontal'")
        flip = data.get("flip_horizontal", False)
        if not isinstance(flip, bool):
            raise ValueError(f"flip_horizontal must be true or false, got {flip!r}")
        return cls(flip_horizontal=flip)
