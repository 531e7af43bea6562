"""The CutPaste 3-way augmentation (Li et al. 2021) restricted to tissue, as the PICARD paper changed it.

Each normal patch is shown three times: as it is (class 0), with a cut-paste (class 1: a rectangle of 2-15 % of
the patch area, width/height ratio in [0.3, 1/0.3], cut from the patch, jittered in brightness and contrast and
pasted elsewhere in it) and with a cut-paste scar (class 2: a thin rectangle, 2-16 x 10-25 px at Li et al.'s
256 px, turned by up to 45 degrees, jittered and pasted). The PICARD paper adds one rule: nothing is cut from or
pasted into blank regions. Here that is exact: a tissue pixel is one at or above ``tissue_threshold`` (the
criterion ``PatchSampler`` selects patches by), and the cut rectangle and the paste's bounding box must both lie
wholly on tissue. Where a patch has no such place, the augmentation gives None and the caller draws another patch.

Everything random comes from the numpy generator passed in, so a training run's augmentations follow its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NORMAL, CUT_PASTE, SCAR = 0, 1, 2
CLASS_NAMES = ("normal", "cut-paste", "cut-paste scar")
SCAR_REFERENCE_SIZE = 256
"""Li et al.'s image side: scar sizes are given in its pixels and scale with the patch side."""


@dataclass(frozen=True)
class CutPasteAugmentation:
    """The shape of cut-pastes and scars. Areas are fractions of the patch; scar sizes are pixels of a 256 px patch.

    area_ratio: (min, max) area of a cut-paste rectangle as a fraction of the patch area.
    aspect_ratio: a cut-paste rectangle's width / height is drawn log-uniformly from [aspect_ratio, 1 / aspect_ratio].
    scar_width, scar_length: (min, max) sides of a scar in pixels of a 256 px patch.
    scar_angle: a scar turns by a uniform angle in [-scar_angle, scar_angle] degrees.
    jitter: the pasted pixels' brightness and contrast are scaled by factors uniform in [1 - jitter, 1 + jitter].
    tissue_threshold: intensity in [0, 1] at or above which a pixel is tissue.
    """

    area_ratio: tuple[float, float] = (0.02, 0.15)
    aspect_ratio: float = 0.3
    scar_width: tuple[float, float] = (2.0, 16.0)
    scar_length: tuple[float, float] = (10.0, 25.0)
    scar_angle: float = 45.0
    jitter: float = 0.1
    tissue_threshold: float = 0.005


@dataclass(frozen=True)
class Pasted:
    """An augmented patch: image (P, P) float32 in [0, 1]; pasted (P, P) bool, the pixels replaced; source
    (P, P) bool, the rectangle the pixels were cut from."""

    image: np.ndarray
    pasted: np.ndarray
    source: np.ndarray


def tissue_of(patch: np.ndarray, augmentation: CutPasteAugmentation) -> np.ndarray:
    """(P, P) bool: the patch's tissue pixels (at or above the threshold, as ``PatchSampler`` counts them)."""
    return patch >= augmentation.tissue_threshold


def box_corners(tissue: np.ndarray, height: int, width: int) -> np.ndarray:
    """Flat indices into the (P - height + 1, P' - width + 1) grid of top-left corners of the height x width boxes
    that lie wholly on ``tissue`` (P x P' bool); the grid's row length is P' - width + 1."""
    rows, cols = tissue.shape
    if height > rows or width > cols:
        return np.zeros(0, dtype=np.int64)
    table = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    table[1:, 1:] = tissue.cumsum(0).cumsum(1)
    inside = table[height:, width:] - table[:-height, width:] - table[height:, :-width] + table[:-height, :-width]
    return np.flatnonzero(inside == height * width)


def _corner(tissue: np.ndarray, height: int, width: int, rng: np.random.Generator,
            exclude: tuple[int, int] | None = None) -> tuple[int, int] | None:  # fmt: skip
    """A uniformly drawn top-left corner of a height x width box on tissue (not ``exclude``), or None."""
    corners = box_corners(tissue, height, width)
    row_length = tissue.shape[1] - width + 1
    if exclude is not None:
        corners = corners[corners != exclude[0] * row_length + exclude[1]]
    if corners.size == 0:
        return None
    return divmod(int(corners[rng.integers(corners.size)]), row_length)


def _jittered(pixels: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """Brightness then contrast jitter of grey pixels (torchvision ColorJitter's two grey-level factors)."""
    brightness, contrast = rng.uniform(1 - jitter, 1 + jitter, size=2)
    brighter = pixels * brightness
    mean = brighter.mean()
    return np.clip((brighter - mean) * contrast + mean, 0.0, 1.0).astype(np.float32)


def cut_paste(patch: np.ndarray, rng: np.random.Generator, augmentation: CutPasteAugmentation) -> Pasted | None:
    """Class 1: a jittered rectangle of the patch pasted at another place; None when the patch's tissue holds no
    two places for the drawn rectangle.

    patch: (P, P) float32 in [0, 1].
    """
    size = patch.shape[0]
    area = rng.uniform(*augmentation.area_ratio) * size * size
    aspect = math.exp(rng.uniform(math.log(augmentation.aspect_ratio), -math.log(augmentation.aspect_ratio)))
    height = min(size, max(1, round(math.sqrt(area / aspect))))
    width = min(size, max(1, round(math.sqrt(area * aspect))))
    tissue = tissue_of(patch, augmentation)
    source = _corner(tissue, height, width, rng)
    if source is None:
        return None
    target = _corner(tissue, height, width, rng, exclude=source)
    if target is None:
        return None
    (top, left), (row, col) = source, target
    piece = _jittered(patch[top : top + height, left : left + width], rng, augmentation.jitter)
    image = patch.copy()
    image[row : row + height, col : col + width] = piece
    pasted = np.zeros(patch.shape, dtype=bool)
    pasted[row : row + height, col : col + width] = True
    cut = np.zeros(patch.shape, dtype=bool)
    cut[top : top + height, left : left + width] = True
    return Pasted(image, pasted, cut)


def scar(patch: np.ndarray, rng: np.random.Generator, augmentation: CutPasteAugmentation) -> Pasted | None:
    """Class 2: a thin jittered rectangle of the patch, turned and pasted (nearest-pixel sampling); None when the
    patch's tissue holds no place for the drawn rectangle or for its turned bounding box.

    patch: (P, P) float32 in [0, 1].
    """
    size = patch.shape[0]
    scale = size / SCAR_REFERENCE_SIZE
    width = min(size, max(1, round(rng.uniform(*augmentation.scar_width) * scale)))
    length = min(size, max(1, round(rng.uniform(*augmentation.scar_length) * scale)))
    angle = math.radians(rng.uniform(-augmentation.scar_angle, augmentation.scar_angle))
    cos, sin = math.cos(angle), math.sin(angle)
    # the turned rectangle's bounding box; its length runs down the rows before turning
    box_height = min(size, max(1, math.ceil(abs(cos) * length + abs(sin) * width)))
    box_width = min(size, max(1, math.ceil(abs(sin) * length + abs(cos) * width)))
    dy = np.arange(box_height)[:, None] - (box_height - 1) / 2
    dx = np.arange(box_width)[None, :] - (box_width - 1) / 2
    along, across = cos * dy - sin * dx, sin * dy + cos * dx  # box offsets in the rectangle's own axes
    footprint = (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)
    tissue = tissue_of(patch, augmentation)
    source = _corner(tissue, length, width, rng)
    target = _corner(tissue, box_height, box_width, rng) if source is not None else None
    if target is None or not footprint.any():
        return None
    (top, left), (row, col) = source, target
    piece = _jittered(patch[top : top + length, left : left + width], rng, augmentation.jitter)
    rows = np.clip(np.floor(along + length / 2).astype(np.int64), 0, length - 1)
    cols = np.clip(np.floor(across + width / 2).astype(np.int64), 0, width - 1)
    image = patch.copy()
    region = image[row : row + box_height, col : col + box_width]
    region[footprint] = piece[rows[footprint], cols[footprint]]
    pasted = np.zeros(patch.shape, dtype=bool)
    pasted[row : row + box_height, col : col + box_width] = footprint
    cut = np.zeros(patch.shape, dtype=bool)
    cut[top : top + length, left : left + width] = True
    return Pasted(image, pasted, cut)


def three_way(
    patch: np.ndarray, rng: np.random.Generator, augmentation: CutPasteAugmentation
) -> tuple[np.ndarray, np.ndarray] | None:
    """The three views of one patch and their classes: ((3, P, P) float32 normal / cut-paste / scar, (3,) int64
    [0, 1, 2]); None when the patch has no room on tissue for one of them."""
    pasted = cut_paste(patch, rng, augmentation)
    scarred = scar(patch, rng, augmentation) if pasted is not None else None
    if scarred is None:
        return None
    views = np.stack([patch.astype(np.float32), pasted.image, scarred.image])
    return views, np.array([NORMAL, CUT_PASTE, SCAR], dtype=np.int64)
