"""The image carrier (or imaged object): Otsu foreground, the largest contour's minimum-area rotated box, crop and
deskew, and the map back.

Davletshina et al. (2020, section 2.1) find the X-ray image carrier with OpenCV: Otsu binarisation, contour
detection, and the minimum-area bounding box of the contour, which need not be axis-aligned. Here scikit-image
gives the Otsu threshold, the connected regions and the contour (``find_contours`` at the binary mask's 0.5 level
runs along the pixel edges), scipy the contour's convex hull; scikit-image has no minimum-area rectangle, so
``min_area_rectangle`` is the rotating-calipers search over the hull's edge directions (Freeman and Shapira 1975:
the minimum-area enclosing rectangle has a side on a hull edge). The crop samples the box with a bilinear affine
warp, so the box's rotation is undone (deskewed), and ``RotatedBox.to_source`` warps a map on the crop back onto
the source image's pixels.

Coordinates: (row, col) pixel centres, as numpy indexes them. A box's ``angle`` is the direction of its width
axis, in degrees from the column axis towards the row axis (clockwise on screen), in (-45, 45].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from skimage.filters import threshold_otsu
from skimage.measure import find_contours, label
from skimage.transform import AffineTransform, resize, warp


def _writable(array: np.ndarray) -> np.ndarray:
    """float32, C-contiguous and writable (scikit-image's warp refuses read-only buffers), copied only if needed."""
    return np.require(array, dtype=np.float32, requirements=("C", "W"))


@dataclass(frozen=True)
class RotatedBox:
    """A rectangle on an image: centre (row, col) and size (height, width) in pixels, its width axis turned by
    ``angle`` degrees from the column axis towards the row axis."""

    centre: tuple[float, float]
    size: tuple[float, float]
    angle: float

    @property
    def crop_shape(self) -> tuple[int, int]:
        """(rows, cols) of the deskewed crop: the box's size in whole pixels."""
        return max(1, round(self.size[0])), max(1, round(self.size[1]))

    def crop_to_source(self) -> np.ndarray:
        """(3, 3) float64 affine matrix from crop (x = col, y = row) to source (x, y) coordinates."""
        radians = np.deg2rad(self.angle)
        cos, sin = np.cos(radians), np.sin(radians)
        rows, cols = self.crop_shape
        middle_row, middle_col = (rows - 1) / 2, (cols - 1) / 2
        centre_row, centre_col = self.centre
        return np.array([
            [cos, -sin, centre_col - cos * middle_col + sin * middle_row],
            [sin, cos, centre_row - sin * middle_col - cos * middle_row],
            [0.0, 0.0, 1.0],
        ])  # fmt: skip

    def crop(self, image: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """The box cut out of ``image`` (H, W) and turned upright: (rows, cols) float32, bilinear; parts of the
        box outside the image hold ``fill``."""
        transform = AffineTransform(matrix=self.crop_to_source())
        cropped = warp(_writable(image), transform, output_shape=self.crop_shape, order=1,
                       mode="constant", cval=fill, preserve_range=True)  # fmt: skip
        return cropped.astype(np.float32)

    def to_source(self, array: np.ndarray, source_shape: tuple[int, int], fill: float = 0.0) -> np.ndarray:
        """A map on the crop (``crop_shape``) warped back onto the source image: (H, W) float32, bilinear, ``fill``
        outside the box."""
        if array.shape != self.crop_shape:
            raise ValueError(f"expected a {self.crop_shape} map on the crop, got {array.shape}")
        transform = AffineTransform(matrix=np.linalg.inv(self.crop_to_source()))
        back = warp(_writable(array), transform, output_shape=source_shape, order=1,
                    mode="constant", cval=fill, preserve_range=True)  # fmt: skip
        return back.astype(np.float32)


def min_area_rectangle(points: np.ndarray) -> RotatedBox:
    """The smallest-area rectangle enclosing 2-D points, any orientation.

    points: (N, 2) float (row, col), N >= 1. Degenerate sets (one point, a line) give a box of zero height or
    width. The angle is normalised to (-45, 45], so a box tilted by less than 45 degrees keeps its orientation
    (portrait stays portrait).
    """
    points = np.asarray(points, dtype=np.float64)
    xy = points[:, ::-1]  # x = col, y = row
    try:
        hull = xy[ConvexHull(xy).vertices]
    except (QhullError, ValueError):  # fewer than 3 points or all on one line: every point is on the hull
        hull = xy
    edges = np.diff(np.vstack([hull, hull[:1]]), axis=0)
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2))
    if angles.size == 0:
        angles = np.zeros(1)
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    along = hull[:, 0] * cos + hull[:, 1] * sin  # (angles, points) coordinate on the width axis
    across = -hull[:, 0] * sin + hull[:, 1] * cos  # ... and on the height axis
    widths = along.max(axis=1) - along.min(axis=1)
    heights = across.max(axis=1) - across.min(axis=1)
    best = int(np.argmin(widths * heights))
    angle = float(angles[best])
    mid_along = (along[best].max() + along[best].min()) / 2
    mid_across = (across[best].max() + across[best].min()) / 2
    centre_x = mid_along * np.cos(angle) - mid_across * np.sin(angle)
    centre_y = mid_along * np.sin(angle) + mid_across * np.cos(angle)
    width, height = float(widths[best]), float(heights[best])
    if angle > np.pi / 4:  # turn the other way: the width axis becomes the former height axis
        angle -= np.pi / 2
        width, height = height, width
    return RotatedBox((float(centre_y), float(centre_x)), (height, width), float(np.rad2deg(angle)))


def downscaled(image: np.ndarray, longest_side: int) -> tuple[np.ndarray, float]:
    """(image shrunk so its longer side is at most ``longest_side``, antialiased; the scale factor <= 1)."""
    scale = min(1.0, longest_side / max(image.shape))
    if scale == 1.0:
        return np.asarray(image, dtype=np.float32), 1.0
    shape = tuple(max(1, round(side * scale)) for side in image.shape)
    return resize(np.asarray(image, dtype=np.float32), shape, order=1, anti_aliasing=True,
                  preserve_range=True).astype(np.float32), scale  # fmt: skip


def otsu_mask(image: np.ndarray) -> np.ndarray | None:
    """(H, W) bool: pixels above the image's Otsu threshold; None for a constant image (nothing to separate)."""
    if float(image.max()) <= float(image.min()):
        return None
    return image > threshold_otsu(image)


def largest_region(mask: np.ndarray) -> np.ndarray | None:
    """(H, W) bool: the largest 8-connected region of ``mask``; None when the mask is empty."""
    labels = label(mask, connectivity=2)
    if labels.max() == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def largest_contour(region: np.ndarray) -> np.ndarray:
    """(N, 2) float (row, col): the contour of a region enclosing the largest area, along its pixels' edges."""
    contours = find_contours(np.pad(region.astype(np.float32), 1), 0.5)

    def enclosed_area(contour: np.ndarray) -> float:  # shoelace formula
        rows, cols = contour[:, 0], contour[:, 1]
        return abs(float(np.dot(rows, np.roll(cols, 1)) - np.dot(cols, np.roll(rows, 1)))) / 2

    return max(contours, key=enclosed_area) - 1.0  # undo the padding


def detect_carrier(
    image: np.ndarray, *, deskew: bool = True, detection_size: int = 512, min_fraction: float = 0.05
) -> RotatedBox | None:
    """The box of the image carrier (the largest bright region): Otsu threshold, largest region's contour, its
    minimum-area rotated box (``deskew``) or its axis-aligned box.

    Args:
        image: (H, W) float image, dark background.
        deskew: find the minimum-area box of any orientation (True) or the axis-aligned bounding box.
        detection_size: the image is searched shrunk to this longer side (pixels); the box is scaled back.
        min_fraction: a box smaller than this fraction of the image area counts as not found.

    Returns None when nothing is found (a constant image, or a region below ``min_fraction``).
    """
    small, scale = downscaled(image, detection_size)
    foreground = otsu_mask(small)
    region = None if foreground is None else largest_region(foreground)
    if region is None:
        return None
    # pixel-centre coordinates of the shrunk image -> of the source image
    points = (largest_contour(region) + 0.5) / scale - 0.5
    if deskew:
        box = min_area_rectangle(points)
    else:
        low, high = points.min(axis=0), points.max(axis=0)
        box = RotatedBox(tuple(((low + high) / 2).tolist()), tuple((high - low).tolist()), 0.0)
    if box.size[0] * box.size[1] < min_fraction * image.shape[0] * image.shape[1]:
        return None
    return box
