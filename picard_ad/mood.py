"""MOOD challenge outputs: per-voxel and per-case anomaly scores in [0, 1] from a 2D method run slice by slice.

The MOOD evaluator clamps predictions to [0, 1] and reads them as float16, where only 15,361 values lie in
[0, 1] (spacing 2**-11 just below 1), so nearby high scores tie. Both tasks therefore go through one fixed,
monotone squashing, the same for every case so that scores compare between cases (the pixel AP pools the voxels
of 20 cases, the sample AP ranks all cases):

    g(raw) = 1 / (1 + exp(-(raw - center) / scale))

``center`` is the raw score mapped to 0.5 and ``scale`` the raw units per e-fold; both come from the method
(``MoodSettings``). Below ``center`` g is close to exp((raw - center) / scale), where float16 keeps a constant
relative precision, so raw scores stay apart down to a difference of about scale / 1000. Above ``center`` the
values crowd towards 1 and would tie. Choose ``center`` near the highest raw scores of normal scans (e.g. the
99.9th percentile of the method's voxel scores on normal training volumes) and ``scale`` a few times smaller
than the spread of raw scores that matters; the defaults suit maps in [0, 1] such as "brightness", PICARD's
scores (tens for an untrained network) need their own.

Pixel task: each voxel's g is rounded down to a float16 value, then the voxels with the highest raw scores (the top
``SPREAD_FRACTION`` of the volume, at most ``SPREAD_LIMIT`` distinct raw values, since float16 cannot hold the 1 %
of a 256**3 volume apart) are spread so that distinct raw values get distinct float16 values in the same order:
walking down from the highest raw value, each takes the largest float16 value that is at most its own g and below
the previous one. Only crowded values move (by as many float16 steps as there are higher values crowding them), so
the cross-case calibration of g is kept; the other voxels keep their g unless the spread set was pushed down, in
which case their float16 bit patterns are scaled by r = (lowest spread pattern / its unpushed pattern) < 1, which
keeps the whole mapping monotone and merges about a fraction 1 - r of their float16 values. Outputs are float32
holding exact float16 values, so the evaluator's cast changes nothing.

Sample task: the thesis's slice-max score, the maximum over slices of each slice's ``SLICE_QUANTILE`` quantile
of its score map over tissue, squashed by g. Ranks cannot be used here: every case is scored on its own, so
only a fixed map keeps cases comparable; it is written with full float precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from picard_ad.data.tissue import tissue_mask
from picard_ad.errors import ConfigError, InputError, PicardError
from picard_ad.io import iter_slices, read_header
from picard_ad.io.writers import atomic_path, atomic_write_text
from picard_ad.methods.base import IMAGE_SCORE_QUANTILE

SLICE_QUANTILE = IMAGE_SCORE_QUANTILE  # per slice, over tissue; the sample score is the maximum over slices
SPREAD_FRACTION = 0.01  # the top 1 % of voxels get distinct float16 values where their raw scores differ
SPREAD_LIMIT = 8192  # distinct raw values spread at most: float16 has only 15,361 values in [0, 1]
FLOAT16_ONE = 0x3C00  # bit pattern of float16 1.0; non-negative float16 bit patterns sort like their values
TASKS = ("pixel", "sample")
NIFTI_SUFFIXES = (".nii.gz", ".nii")

ScoreMap = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class MoodSettings:
    """How raw scores become MOOD scores.

    task: "pixel" (a NIfTI of voxel scores) or "sample" (one score per case in a .txt file).
    axis: the stored volume axis the 2D method slices along (0, 1 or 2).
    center: raw score mapped to 0.5 by the squashing; put it near the highest raw scores of normal scans.
    scale: raw-score units per e-fold of the squashing (> 0); raw scores closer than about scale / 1000 tie.
    """

    task: str = "pixel"
    axis: int = 2
    center: float = 1.0
    scale: float = 0.1

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.axis not in (0, 1, 2):
            raise ConfigError(f"axis must be 0, 1 or 2, got {self.axis!r}")
        if not (math.isfinite(self.center) and math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"center must be finite and scale positive, got {self.center} and {self.scale}")


def squash(raw: np.ndarray | float, settings: MoodSettings) -> np.ndarray:
    """The fixed logistic g of raw scores (any shape) -> [0, 1], monotone; float32 stays float32, else float64."""
    raw = np.asarray(raw)
    z = (raw.astype(raw.dtype if raw.dtype == np.float32 else np.float64) - settings.center) / settings.scale
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic without overflow in exp for large |z|


def float16_floor_codes(values: np.ndarray) -> np.ndarray:
    """Bit patterns (int32) of the largest float16 at most each value; values (any shape) float32 or float64."""
    values = np.asarray(values)
    values = np.clip(values, 0.0, 1.0, dtype=values.dtype if values.dtype == np.float32 else np.float64)
    nearest = values.astype(np.float16)
    codes = nearest.view(np.uint16).astype(np.int32)
    codes -= nearest.astype(values.dtype) > values  # rounded up: step one float16 value down (exact comparison)
    return np.clip(codes, 0, FLOAT16_ONE)


def codes_to_scores(codes: np.ndarray) -> np.ndarray:
    """float32 scores holding exactly the float16 values of bit patterns ``codes`` (in 0 .. 0x3C00)."""
    return codes.astype(np.uint16).view(np.float16).astype(np.float32)


def pixel_scores(raw: np.ndarray, settings: MoodSettings) -> np.ndarray:
    """MOOD voxel scores: raw (any shape) finite floats -> float32 of that shape in [0, 1], exact float16 values.

    Monotone and deterministic; distinct raw values among the top ``SPREAD_FRACTION`` of voxels (at most
    ``SPREAD_LIMIT`` of them) get distinct float16 values in the same order (see the module docstring).
    """
    raw = np.asarray(raw)
    flat = raw.ravel().astype(np.float32 if raw.dtype == np.float32 else np.float64, copy=False)
    codes = float16_floor_codes(squash(flat, settings))
    n_top = min(flat.size, max(1, math.ceil(SPREAD_FRACTION * flat.size)))
    threshold = np.partition(flat, flat.size - n_top)[flat.size - n_top]
    top_values = np.unique(flat[flat >= threshold])[::-1][:SPREAD_LIMIT]  # distinct, highest first
    threshold = top_values[-1]
    target = float16_floor_codes(squash(top_values, settings))
    rank = np.arange(top_values.size)
    # code_k = min(target_k, code_{k-1} - 1): with d_k = code_k + k this is a running minimum of target_k + k.
    spread = np.minimum.accumulate(target + rank) - rank
    spread = np.maximum(spread, top_values.size - rank)  # the k-th highest of K keeps K - k patterns below
    in_top = flat >= threshold
    position = np.searchsorted(-top_values, -flat[in_top])  # top_values is descending
    codes[in_top] = spread[position]
    if target[-1] > spread[-1]:  # the spread set was pushed down: compress the rest below it, in order
        codes[~in_top] = codes[~in_top] * spread[-1] // target[-1]
    return codes_to_scores(codes).reshape(raw.shape)


def nifti_inputs(folder: str | Path) -> list[Path]:
    """Sorted ``*.nii.gz`` and ``*.nii`` files directly in ``folder`` (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "input folder not found")
    return sorted(
        path for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.name.lower().endswith(NIFTI_SUFFIXES)
    )


def output_path(input_path: Path, output_dir: Path, task: str) -> Path:
    """MOOD's output name: the input's name for the pixel task, ``<input name>.txt`` for the sample task."""
    return output_dir / (input_path.name if task == "pixel" else f"{input_path.name}.txt")


def score_volume(path: Path, score_map: ScoreMap, axis: int = 2) -> tuple[np.ndarray, float]:
    """Raw scores of a NIfTI volume, slice by slice, in its stored geometry, and its raw slice-max sample score.

    Returns (scores float32 of the effective stored shape (trailing length-1 axes dropped), raw sample score).
    score_map: (H, W) float32 image in [0, 1] -> (H, W) raw scores, higher = more anomalous.
    """
    header = read_header(path)
    shape = tuple(int(n) for n in header.stored_shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    volume = np.empty(shape, dtype=np.float32)
    sample = -np.inf
    for image in iter_slices(path, axis=axis):
        scores = np.asarray(score_map(image.pixels), dtype=np.float32)
        if scores.shape != image.pixels.shape or not np.isfinite(scores).all():
            raise PicardError(f"{path}: slice {image.meta.slice_index}: the method returned a {scores.shape} map "
                              f"with non-finite values or of the wrong shape for a {image.pixels.shape} slice")
        tissue = tissue_mask(image.pixels)
        sample = max(sample, float(np.quantile(scores[tissue] if tissue.any() else scores, SLICE_QUANTILE)))
        if len(shape) == 2:
            volume[...] = scores
        else:
            index: list = [slice(None)] * 3
            index[axis] = image.meta.slice_index
            volume[tuple(index)] = scores
    return volume, sample


def write_pixel_nifti(destination: Path, source: Path, scores: np.ndarray) -> None:
    """Write ``scores`` (the source's effective shape) as a float32 NIfTI with the source's shape and affine."""
    import nibabel

    original = nibabel.load(source)
    header = original.header.copy()
    header.set_data_dtype(np.float32)
    image = nibabel.Nifti1Image(scores.reshape(original.shape).astype(np.float32), original.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    with atomic_path(destination) as tmp:
        nibabel.save(image, tmp)


def run_case(path: Path, output_dir: Path, score_map: ScoreMap, settings: MoodSettings) -> bool:
    """Score one MOOD case and write its output atomically; returns False (and does nothing) if it exists."""
    destination = output_path(path, output_dir, settings.task)
    if destination.is_file():
        return False
    raw, sample = score_volume(path, score_map, settings.axis)
    if settings.task == "pixel":
        write_pixel_nifti(destination, path, pixel_scores(raw, settings))
    else:
        atomic_write_text(destination, f"{float(squash(sample, settings))!r}\n")
    return True
