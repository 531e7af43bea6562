"""The CAE's training data: normal images through the preprocessing chain once, then augmented per step.

Davletshina et al. store the offline steps (crop, foreground mask) once and augment on the fly. Here every
training image (each slice of a volume) is read, prepared (``picard_ad.data.preprocessing.prepare``) and resized
to the network's input size with its aspect kept, once, when training starts, and held in memory with its mask
(a 128 px image is 64 KiB); the histogram equalization is applied then too, or after the augmentation
(``equalization_order``). Each step draws images with replacement, augments them (the paper's "advanced" or
"default" lists, appendix A.3) and pads them onto the square input, as ``resize_with_padding`` does when scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from skimage.transform import AffineTransform, warp

from picard_ad.data.patches import ImageEntry
from picard_ad.data.preprocessing import Placement, PreprocessingSettings, equalize_with, prepare
from picard_ad.data.preprocessing.resize import resize_bilinear, resize_mask

BRIGHTNESS = (0.8, 1.2)
SCALE = (0.8, 1.2)
ROTATION = 20.0  # degrees either way
PROBABILITY = 0.5  # of each augmentation


@dataclass(frozen=True, eq=False)
class TrainingImage:
    """One prepared normal image at the network's scale: image (rows, cols) float32 in [0, 1] (0 off the mask in
    the full chain) and mask (rows, cols) bool, the pixels the loss counts; its longer side is the input size."""

    image: np.ndarray
    mask: np.ndarray


def load_training_images(
    entries: Sequence[ImageEntry], settings: PreprocessingSettings, input_size: int, equalize_now: bool
) -> list[TrainingImage]:
    """Every image (and volume slice) of ``entries`` prepared and resized to fit ``input_size``; equalized when
    ``equalize_now``."""
    from picard_ad.io import read_image

    images = []
    for entry in entries:
        for index in range(entry.n_slices):
            prepared = prepare(read_image(entry.path, index).pixels, settings)
            placement = Placement.of(prepared.image.shape, input_size)
            shape = (placement.rows, placement.cols)
            image, mask = resize_bilinear(prepared.image, shape), resize_mask(prepared.mask, shape)
            if equalize_now:
                image = equalize_with(image, mask, settings)
            images.append(TrainingImage(np.clip(image, 0.0, 1.0), mask))
    return images


def augment(
    item: TrainingImage, rng: np.random.Generator, kind: Literal["advanced", "default", "none"]
) -> TrainingImage:
    """One random augmentation of an image and its mask (Davletshina et al., appendix A.3).

    default: horizontal and vertical flips, each with probability 0.5. advanced: also, each with probability 0.5,
    brightness times U(0.8, 1.2) (clipped to [0, 1]), independent row and column scales U(0.8, 1.2) and a
    rotation by U(-20, 20) degrees about the centre (bilinear; the mask nearest), the size kept. The random
    numbers are drawn in a fixed order whatever is applied, so a run is reproducible from the generator's state.
    """
    if kind == "none":
        return item
    image, mask = item.image, item.mask
    draws = rng.random(5)
    brightness, row_scale, col_scale = rng.uniform(*BRIGHTNESS), rng.uniform(*SCALE), rng.uniform(*SCALE)
    angle = rng.uniform(-ROTATION, ROTATION)
    if draws[0] < PROBABILITY:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if draws[1] < PROBABILITY:
        image, mask = image[::-1], mask[::-1]
    if kind == "advanced":
        if draws[2] < PROBABILITY:
            image = np.clip(image * brightness, 0.0, 1.0)
        scale = (col_scale, row_scale) if draws[3] < PROBABILITY else (1.0, 1.0)
        rotation = np.deg2rad(angle) if draws[4] < PROBABILITY else 0.0
        if scale != (1.0, 1.0) or rotation != 0.0:
            centre = np.array([(image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2])  # (x, y)
            forward = (AffineTransform(translation=-centre) + AffineTransform(scale=scale, rotation=rotation)
                       + AffineTransform(translation=centre))  # fmt: skip
            image = warp(image, forward.inverse, order=1, mode="constant", cval=0.0, preserve_range=True)
            mask = warp(mask.astype(np.float32), forward.inverse, order=0, mode="constant", cval=0.0) >= 0.5
    return TrainingImage(np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(mask))


def to_canvas(item: TrainingImage, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask) on the square input, top-left, padded with 0 / False: (S, S) float32 and bool."""
    rows, cols = item.image.shape
    image = np.zeros((input_size, input_size), dtype=np.float32)
    mask = np.zeros((input_size, input_size), dtype=bool)
    image[:rows, :cols], mask[:rows, :cols] = item.image, item.mask
    return image, mask
