"""Aspect-preserving resize onto a square canvas with padding, and the map back.

The placement is ``resized_heatmap``'s (``picard_ad.localize.whole_image``): the longer side fills the canvas,
the image sits in the top-left corner and the rest is 0 (the dark background the readers give), resized
bilinearly (antialiased when shrinking) by the same torch call. So a network trained on ``resize_with_padding``'s
canvases is scored by ``resized_heatmap`` on exactly the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from picard_ad.localize.whole_image import fitted_shape


def resize_bilinear(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float array resized to ``shape``: bilinear, antialiased when shrinking; float32."""
    if image.shape == tuple(shape):
        return np.asarray(image, dtype=np.float32)
    tensor = torch.from_numpy(np.array(image, dtype=np.float32))[None, None]
    shrinking = shape[0] < image.shape[0] or shape[1] < image.shape[1]
    resized = F.interpolate(tensor, size=tuple(shape), mode="bilinear", align_corners=False, antialias=shrinking)
    return resized[0, 0].numpy()


@dataclass(frozen=True)
class Placement:
    """Where an image of ``source_shape`` lies on a ``size`` x ``size`` canvas: its top-left (rows, cols)."""

    source_shape: tuple[int, int]
    size: int
    rows: int
    cols: int

    @classmethod
    def of(cls, source_shape: tuple[int, int], size: int) -> Placement:
        """The placement of an image of ``source_shape`` on a canvas of side ``size``, aspect ratio kept."""
        rows, cols = fitted_shape(tuple(source_shape), size, True)
        return cls(tuple(source_shape), size, rows, cols)

    def place(self, image: np.ndarray) -> np.ndarray:
        """(size, size) float32 canvas: ``image`` at (rows, cols) in the top-left corner, 0 elsewhere."""
        canvas = np.zeros((self.size, self.size), dtype=np.float32)
        canvas[: self.rows, : self.cols] = image
        return canvas

    def content(self, canvas: np.ndarray) -> np.ndarray:
        """The (rows, cols) part of a canvas-sized array that holds the image."""
        return canvas[: self.rows, : self.cols]

    def to_source(self, canvas: np.ndarray) -> np.ndarray:
        """A canvas-sized map resized back onto the source image: (H, W) float32."""
        if canvas.shape != (self.size, self.size):
            raise ValueError(f"expected a {self.size} x {self.size} map, got {canvas.shape}")
        return resize_bilinear(np.ascontiguousarray(self.content(canvas)), self.source_shape)


def resize_with_padding(image: np.ndarray, size: int) -> tuple[np.ndarray, Placement]:
    """(canvas (size, size) float32, placement): ``image`` resized with its aspect ratio kept and padded with 0."""
    placement = Placement.of(image.shape, size)
    return placement.place(resize_bilinear(image, (placement.rows, placement.cols))), placement


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask resized to ``shape``: the bilinear resize of its 0/1 values, kept where >= 0.5."""
    return resize_bilinear(np.asarray(mask, dtype=np.float32), shape) >= 0.5
