"""Box and Circle lesion shapes in pixel coordinates (conventions in ``picard_ad.io.annotations``) and their
conversion to bool masks."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from picard_ad.errors import AnnotationError


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


@dataclass(frozen=True)
class Circle:
    """Circular lesion: centre (x = column, y = row) and radius in pixels; covers pixel centres within the radius."""

    x: float
    y: float
    radius: float
    label: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.x) and math.isfinite(self.y) and math.isfinite(self.radius)):
            raise ValueError(f"circle centre and radius must be finite, got ({self.x}, {self.y}), r={self.radius}")
        if self.radius <= 0:
            raise ValueError(f"circle radius must be positive, got {self.radius}")
        if not self._covers_a_pixel():
            raise ValueError(f"circle at ({self.x}, {self.y}) with radius {self.radius} covers no pixel centre")

    def _covers_a_pixel(self) -> bool:
        nearest = (round(self.x) - self.x) ** 2 + (round(self.y) - self.y) ** 2
        return nearest <= self.radius**2

    @property
    def box(self) -> Box:
        """Smallest Box holding every pixel the circle covers (may extend past the image)."""
        columns = self._covered_range(self.x, self.y)
        rows = self._covered_range(self.y, self.x)
        return Box(x=columns[0], y=rows[0], width=columns[1] - columns[0], height=rows[1] - rows[0], label=self.label)

    def _covered_range(self, along: float, across: float) -> tuple[int, int]:
        """End-exclusive integer range along one axis touched by covered pixel centres."""
        # The widest chord lies on the integer line across the axis that is nearest to the centre.
        offset = round(across) - across
        half = math.sqrt(max(self.radius**2 - offset**2, 0.0))
        return math.ceil(along - half), math.floor(along + half) + 1

    def to_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean (H, W) mask of the circle, clipped to the image."""
        mask = np.zeros(shape, dtype=bool)
        _paint(self, mask)
        return mask


Shape = Box | Circle


def _paint(shape: Shape, mask: np.ndarray) -> int:
    """Set the pixels of ``shape`` inside ``mask`` (H, W) bool to True; return how many of them lie in the image."""
    box = shape if isinstance(shape, Box) else shape.box
    top, bottom = max(box.y, 0), min(box.y + box.height, mask.shape[0])
    left, right = max(box.x, 0), min(box.x + box.width, mask.shape[1])
    if top >= bottom or left >= right:
        return 0
    if isinstance(shape, Box):
        mask[top:bottom, left:right] = True
        return (bottom - top) * (right - left)
    rows = np.arange(top, bottom, dtype=np.float64)[:, None]
    columns = np.arange(left, right, dtype=np.float64)[None, :]
    inside = (rows - shape.y) ** 2 + (columns - shape.x) ** 2 <= shape.radius**2
    mask[top:bottom, left:right] |= inside
    return int(inside.sum())


def masks_from_shapes(
    shapes: Iterable[Shape],
    shape: tuple[int, int],
    *,
    source: str | Path | None = None,
    image_name: str | None = None,
) -> np.ndarray:
    """Union of the shapes' pixels as a bool (H, W) mask; shapes partly outside the image are clipped.

    Args:
        shapes: Box and Circle annotations of one image, in its pixel frame.
        shape: (H, W) of the image in pixels.
        source: annotation file, named in errors.
        image_name: image the shapes belong to, named in errors.

    Raises:
        AnnotationError: a shape has no pixel inside the image (wrong image or another coordinate convention).
    """
    height, width = (int(size) for size in shape)
    mask = np.zeros((height, width), dtype=bool)
    for item in shapes:
        if _paint(item, mask) == 0:
            owner = f" of image '{image_name}'" if image_name is not None else ""
            raise AnnotationError(
                source,
                f"{item}{owner} lies entirely outside the {height} x {width} image: the annotation belongs to "
                "another image or uses another coordinate convention",
            )
    return mask
