"""Whole-image localization: methods that score an image resized to their network's input, mapped back.

Many methods (the VAE family, the radiograph autoencoders and GANs) see a whole image or slice at a fixed size,
e.g. 64 x 64, and give a score map at that size. ``resized_heatmap`` resizes the image to fit the input side with
its aspect ratio kept (the rest padded with 0, the dark background the readers give), asks the scorer for its
maps, removes the padding and resizes each map back to the image's geometry, so the heatmap lies on the input
pixels like a sliding-window one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from picard_ad.errors import ConfigError
from picard_ad.localize.heatmap import Heatmap

ImageScorer = Callable[[np.ndarray], dict[str, np.ndarray]]


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W) float32 array, antialiased when shrinking."""
    if image.shape == shape:
        return image
    tensor = torch.from_numpy(np.array(image, dtype=np.float32))[None, None]  # a copy: inputs may be read-only
    shrinking = shape[0] < image.shape[0] or shape[1] < image.shape[1]
    resized = F.interpolate(tensor, size=shape, mode="bilinear", align_corners=False, antialias=shrinking)
    return resized[0, 0].numpy()


def fitted_shape(shape: tuple[int, int], input_size: int, keep_aspect: bool) -> tuple[int, int]:
    """(rows, cols) of an image of ``shape`` resized to fit an ``input_size`` square (aspect kept) or fill it."""
    if not keep_aspect:
        return input_size, input_size
    scale = input_size / max(shape)
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def resized_heatmap(
    image: np.ndarray, scorer: ImageScorer, *, input_size: int, keep_aspect: bool = True
) -> dict[str, Heatmap]:
    """Score an image at a network's input size and return each score's map at the image's size.

    Args:
        image: (H, W) float image in [0, 1], dark background.
        scorer: (input_size, input_size) float32 image in [0, 1] -> {score name: (input_size, input_size) map}.
        input_size: side of the square the scorer takes, pixels.
        keep_aspect: resize so the longer side fits and pad the shorter one with 0 (True), or stretch to the
            square (False).
    """
    started = time.perf_counter()
    if input_size < 1:
        raise ConfigError(f"input_size must be at least 1 pixel, got {input_size}")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected an (H, W) image, got shape {image.shape}")
    rows, cols = fitted_shape(image.shape, input_size, keep_aspect)
    network_input = np.zeros((input_size, input_size), dtype=np.float32)
    network_input[:rows, :cols] = _resize(image, (rows, cols))
    resized = time.perf_counter()
    maps = scorer(network_input)
    scored = time.perf_counter()
    heatmaps = {}
    for name, values in maps.items():
        values = np.asarray(values, dtype=np.float32)
        if values.shape != (input_size, input_size):
            raise RuntimeError(f"score '{name}' is a {values.shape} map for a {input_size} px input")
        array = _resize(np.ascontiguousarray(values[:rows, :cols]), image.shape)
        heatmaps[name] = Heatmap(array=np.ascontiguousarray(array, dtype=np.float32), score_name=name)
    finished = time.perf_counter()
    settings = {"input_size": input_size, "keep_aspect": keep_aspect}
    timings = {
        "resize_s": round(resized - started, 4),
        "scoring_s": round(scored - resized, 4),
        "assembly_s": round(finished - scored, 4),
        "total_s": round(finished - started, 4),
    }
    return {
        name: Heatmap(array=heatmap.array, score_name=name, settings=dict(settings), timings=dict(timings))
        for name, heatmap in heatmaps.items()
    }
