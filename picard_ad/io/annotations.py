"""Lesion annotations (boxes, circles, mask images) and their conversion to pixel masks.

Box convention, used everywhere in picard-ad: ``x`` is the column and ``y`` the row of the top-left pixel,
``width``/``height`` are in pixels, and the box covers rows ``y .. y+height-1`` and columns ``x .. x+width-1``
(end-exclusive slicing ``mask[y:y+height, x:x+width]``), so a box holds exactly ``width * height`` pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """Axis-aligned lesion box in pixel coordinates (x = column, y = row, end-exclusive)."""

    x: int
    y: int
    width: int
    height: int
    label: str | None = None

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"box width and height must be positive, got {self.width} x {self.height}")

    @property
    def center(self) -> tuple[float, float]:
        """(row, column) of the box centre."""
        return (self.y + (self.height - 1) / 2, self.x + (self.width - 1) / 2)

    @property
    def diagonal(self) -> float:
        return math.hypot(self.width, self.height)

    def to_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean (H, W) mask of the box, clipped to the image."""
        mask = np.zeros(shape, dtype=bool)
        mask[max(self.y, 0) : max(self.y + self.height, 0), max(self.x, 0) : max(self.x + self.width, 0)] = True
        return mask
