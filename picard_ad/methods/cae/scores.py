"""The CAE's losses and scores (Davletshina et al. 2020, section 2.3): reconstruction errors under the mask.

Training minimises the masked reconstruction loss, the squared error averaged over the mask's pixels (the paper
prints the norm, not its square, over the mask's size; we take the mean squared error it describes in words).
Scoring gives per pixel the squared or absolute error (0 off the mask: the reconstruction of the background is
arbitrary, the network never learnt it), and per image their mean over the mask (MSE, L1) or the mean of the
``top_k`` largest (the paper's "top-200": only the 200 pixels of highest error count).
"""

from __future__ import annotations

import numpy as np
import torch

SCORE_NAMES = ("mse", "l1", "mse-top-k", "l1-top-k")
_ERROR_OF = {"mse": "squared", "mse-top-k": "squared", "l1": "absolute", "l1-top-k": "absolute"}


def masked_mse(reconstruction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the mask's pixels of a batch: scalar; 0 when the mask is empty.

    All (N, 1, S, S); mask 0/1 float.
    """
    return ((reconstruction - target) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)


def error_maps(image: np.ndarray, reconstruction: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel errors, 0 off the mask: {"squared", "absolute"} (S, S) float32. image, reconstruction: (S, S)
    float in [0, 1]; mask: (S, S) bool."""
    difference = np.where(mask, np.asarray(image, np.float32) - np.asarray(reconstruction, np.float32), 0.0)
    return {"squared": (difference**2).astype(np.float32), "absolute": np.abs(difference).astype(np.float32)}


def score_maps(errors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The pixel map of each score (the top-k scores share the map of their error)."""
    return {name: errors[error] for name, error in _ERROR_OF.items()}


def _top_mean(values: np.ndarray, k: int) -> float:
    if values.size == 0:
        return 0.0
    k = min(k, values.size)
    return float(np.partition(values, values.size - k)[values.size - k :].mean(dtype=np.float64))


def image_scores(errors: dict[str, np.ndarray], mask: np.ndarray, top_k: int) -> dict[str, float]:
    """Each image score from the error maps: mean of the error over the mask, or of its ``top_k`` largest values
    there (all of them when the mask holds fewer); 0 for an empty mask."""
    squared, absolute = errors["squared"][mask], errors["absolute"][mask]
    return {
        "mse": float(squared.mean(dtype=np.float64)) if squared.size else 0.0,
        "l1": float(absolute.mean(dtype=np.float64)) if absolute.size else 0.0,
        "mse-top-k": _top_mean(squared, top_k),
        "l1-top-k": _top_mean(absolute, top_k),
    }
