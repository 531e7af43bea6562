"""MOOD challenge outputs: per-voxel and per-case anomaly scores in [0, 1] from a 2D method run slice by slice.

The MOOD evaluator clamps predictions to [0, 1] and reads them as float16, where only 15,361 values lie in
[0, 1] (spacing 2**-11 just below 1), so nearby high scores tie. Both tasks therefore go through one fixed,
monotone squashing, the same for every case so that scores compare between cases (the pixel AP pools the voxels
of 20 cases, the sample AP ranks all cases):

    g(raw) = 1 / (1 + exp(-(raw - center) / scale))

``center`` is the raw score mapped to 0.5 and ``scale`` the raw units per e-fold; both depend on the method
(``MoodSettings``: given, calibrated on normal scans as below, or defaults). Below ``center`` g is close to
exp((raw - center) / scale), where float16 keeps a constant relative precision, so raw scores stay apart down to
a difference of about scale / 1000. Above ``center`` the values crowd towards 1 and would tie. Choose ``center``
near the highest raw scores of normal scans (e.g. the 99.9th percentile of the method's voxel scores on normal
training volumes) and ``scale`` a few times smaller than the spread of raw scores that matters; the defaults suit
maps in [0, 1] such as "brightness", PICARD's scores (tens for an untrained network) need their own, which
calibration provides.

Pixel task: one fixed mapping for every case. Each voxel's g is rounded down to a float16 value (its "plain"
value; float16 bit patterns, "codes", count float16 steps), so a voxel's output depends on its raw score alone,
whatever the rest of the volume holds, with one exception: exact float16 ties. Several distinct raw values that
round to the same code form a tie group; the ties are broken by the smallest change, defined as follows.

- A distinct raw value that is alone on its code (untied) keeps it; so does every voxel of a volume without ties.
- Outputs keep the order of raw values: equal raw values get equal outputs, higher raw values never lower ones.
- A tie group moves only into the free codes (used by no raw value of the volume) between its neighbouring used
  codes. A free run between two tie groups is shared: each side gets what it can use (its number of distinct
  values minus one) up to half the run (the upper side the odd code), plus what the other side leaves.
- Within that window of d free codes below and u above, the value with the most voxels keeps its plain code
  (a background or a flat region, often most of the volume, never moves); among values with equally many voxels,
  the one that leaves the group most distinct, then the fewest voxel-steps (float16 steps times voxels). The
  values below it take the d free codes below, the lowest value farthest, one code each; when they outnumber
  the room, the ones next to the kept value stay tied with it. Likewise above, with u.

A tie is thus broken where float16 has free values next to it; in crowded ranges (every neighbouring code used)
it stays: ties are worth little AP (removing all of them changed the pooled AP of BraTS volumes by at most 7e-4),
and rescaling whole volumes to remove them would change far more. Outputs are float32 holding exact float16
values, so the evaluator's cast changes nothing.

Sample task: the maximum over a volume's slices of one score per slice, squashed by g. The slice score is the
method's own sample score where it has one (``AnomalyMethod.sample_score_name``, ``image_score``): for vae and
cevae L_KL + L_rec of the slice at the model size (the negative ELBO, thesis eq. 3.14; the slice maximum is the
MOOD example's ceVAE volume score), for dae L_rec, for cradl the negative log-likelihood -log p(f(x)) of the
slice's representation, for pchvae its negative ELBO; all in nats, so such a run needs a calibration (or
--center and --scale) instead of the defaults, which suit maps in [0, 1]. The pixel maps are then not computed.
A method without its own sample score (or with ``sample_score: map``) gets the thesis's slice-max score, each
slice's ``SLICE_QUANTILE`` quantile of its score map over tissue. Ranks cannot be used here: every case is scored
on its own, so only a fixed map keeps cases comparable; it is written with full float precision.

Calibration (``calibrate``) sets ``center`` and ``scale`` from normal scans alone, since no labelled anomalies are
available: the normal volumes are scored exactly as the inputs are, and for the pixel task the raw scores of
their tissue voxels are pooled (all of them, or a uniform random sample of ``CALIBRATION_SAMPLE_SIZE`` voxels
when there are more, which bounds the memory of hundreds of 256**3 volumes and still leaves about 8,000 voxels
above the 0.999 quantile to estimate it). ``center`` is their ``CENTER_QUANTILE`` (0.999) quantile: the level
that normal tissue hardly exceeds, so a voxel scoring above nearly all normal tissue lands in (0.5, 1).
``scale`` is (q0.999 - q0.5) / ``CALIBRATION_E_FOLDS`` (8): the median normal voxel then maps to
exp(-8) = 3.4e-4, still a normal float16 number (above 2**-14) where the relative precision holds, and raw
scores stay clear of float16's last step below 1 (1 - 2**-11, reached at 7.6 e-folds) up to about
center + 0.95 (q0.999 - q0.5): the mapping resolves one normal spread below and one above ``center``, and
only the most anomalous voxels beyond that crowd into float16's last steps. For the sample task the same
quantiles are taken over the raw sample scores of the normal volumes (with few normals the 0.999 quantile is
about their maximum). The result is written to ``CALIBRATION_FILE`` in the output folder with the scorer's
identity (``mood_identity``: for the sample task it names the method's own sample score, when one is used), task
and axis, which a reuse must match: a calibration made for another method, model, score, task or axis is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from picard_ad.config import check_settings, from_dict, setting, to_dict
from picard_ad.data.tissue import tissue_mask
from picard_ad.errors import ConfigError, CorruptFileError, InputError, PicardError
from picard_ad.io import SliceOrigin, iter_slices, read_header
from picard_ad.io.records import read_record
from picard_ad.io.writers import atomic_path, atomic_write_text
from picard_ad.metrics.localization import IMAGE_SCORE_QUANTILE

if TYPE_CHECKING:
    from picard_ad.methods.base import AnomalyMethod

SLICE_QUANTILE = IMAGE_SCORE_QUANTILE  # per slice, over tissue; the sample score is the maximum over slices
FLOAT16_ONE = 0x3C00  # bit pattern of float16 1.0; non-negative float16 bit patterns sort like their values
TASKS = ("pixel", "sample")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
DEFAULT_CENTER = 1.0  # g's defaults without a calibration: suited to score maps in [0, 1]
DEFAULT_SCALE = 0.1

CENTER_QUANTILE = 0.999  # of normal raw scores: mapped to 0.5
SPREAD_QUANTILE = 0.5  # of normal raw scores: the low end of the spread that sets the scale
CALIBRATION_E_FOLDS = 8.0  # e-folds of g between the two quantiles (see the module docstring)
CALIBRATION_SAMPLE_SIZE = 2**23  # tissue voxels kept for the quantiles: at most 32 MB of scores, 64 MB of keys
CALIBRATION_SEED = 0
CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = "picard-ad/mood-calibration"
CALIBRATION_FORMAT_VERSION = 1

ScoreMap = Callable[..., np.ndarray]
"""(image (H, W) float32 in [0, 1], origin=SliceOrigin) -> (H, W) raw scores: ``AnomalyMethod.score_map``."""
SliceScore = Callable[..., float]
"""(image (H, W) float32 in [0, 1], origin=SliceOrigin) -> one raw score: ``AnomalyMethod.image_score``."""


@dataclass(frozen=True)
class MoodSettings:
    """How raw scores become MOOD scores (YAML keys and flags of ``picard-ad mood`` share these names)."""

    task: Literal["pixel", "sample"] = setting("pixel", "MOOD task: a NIfTI of voxel scores, or one score per case "
                                               "in a .txt file")  # fmt: skip
    axis: int = setting(2, "stored volume axis the 2D method slices along", ge=0, le=2)
    center: float | None = setting(None, "raw score mapped to 0.5 by the squashing; overrides the calibration "
                                   f"[calibrated, else {DEFAULT_CENTER}]")  # fmt: skip
    scale: float | None = setting(None, "raw-score units per e-fold of the squashing; overrides the calibration "
                                  f"[calibrated, else {DEFAULT_SCALE}]", gt=0.0)  # fmt: skip
    calibrate: Path | None = setting(None, "set center and scale from the scores of the normal *.nii.gz / *.nii "
                                     f"volumes in this folder (written to OUTPUT_DIR/{CALIBRATION_FILE})",
                                     metavar="NORMAL_DIR")  # fmt: skip
    calibration: Path | None = setting(None, "reuse a calibration.json made for the same method, task and axis",
                                       metavar="FILE")  # fmt: skip

    def __post_init__(self) -> None:
        check_settings(self)
        if self.calibrate is not None and self.calibration is not None:
            raise ConfigError("give at most one of calibrate (a folder of normal volumes) and calibration (a file)")

    @property
    def squashing(self) -> tuple[float, float]:
        """(center, scale) of g in raw-score units: the given values, else the defaults."""
        return (DEFAULT_CENTER if self.center is None else self.center,
                DEFAULT_SCALE if self.scale is None else self.scale)

    def calibrated(self, calibration: Calibration) -> MoodSettings:
        """These settings with the calibration's center and scale where none was given explicitly."""
        return dataclasses.replace(
            self,
            center=calibration.center if self.center is None else self.center,
            scale=calibration.scale if self.scale is None else self.scale,
        )


def mood_method(model_dir: Path | None, method: str | None, settings: dict[str, Any]) -> AnomalyMethod:
    """The method that scores the cases: fitted in ``model_dir`` or else ``method``, one that needs no training, with
    ``settings`` (field values) replacing its saved or default settings."""
    from picard_ad.methods import create_method, load_method

    if model_dir is not None:
        return load_method(model_dir, **settings)
    created = create_method(method, settings=settings)
    if created.needs_training:
        raise ConfigError(f"method '{method}' needs training: fit it (picard-ad fit --method {method} ...) and give "
                          "its run folder to --model")  # fmt: skip
    return created


def slice_sample_score(method: AnomalyMethod, task: str) -> SliceScore | None:
    """The slice score of the sample task: the method's own ``image_score`` when it has one
    (``sample_score_name``), None for the pixel task or a method without one (slice maps' quantiles are used)."""
    return method.image_score if task == "sample" and method.sample_score_name() is not None else None


def mood_identity(method: AnomalyMethod, task: str) -> dict[str, Any]:
    """The scorer identity a calibration records: ``method.identity()``, plus for the sample task the method's own
    sample score under "mood_sample_score" when one is used, so that a calibration of slice-map quantiles is refused
    for own sample scores and the reverse."""
    identity = method.identity()
    if slice_sample_score(method, task) is not None:
        identity["mood_sample_score"] = method.sample_score_name()
    return identity


def squash(raw: np.ndarray | float, settings: MoodSettings) -> np.ndarray:
    """The fixed logistic g of raw scores (any shape) -> [0, 1], monotone; float32 stays float32, else float64."""
    raw = np.asarray(raw)
    center, scale = settings.squashing
    z = (raw.astype(raw.dtype if raw.dtype == np.float32 else np.float64) - center) / scale
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

    Each voxel gets g(raw) rounded down to float16, except that distinct raw values tied on one float16 value are
    moved apart by the smallest change (``break_float16_ties``; see the module docstring).
    """
    raw = np.asarray(raw)
    flat = raw.ravel().astype(np.float32 if raw.dtype == np.float32 else np.float64, copy=False)
    values, voxel_value, counts = np.unique(flat, return_inverse=True, return_counts=True)
    codes = break_float16_ties(float16_floor_codes(squash(values, settings)), counts)
    return codes_to_scores(codes)[voxel_value].reshape(raw.shape)


def break_float16_ties(codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Float16 codes of distinct raw values with exact ties broken by the smallest change (module docstring).

    codes: (K,) int, non-decreasing, in 0 .. ``FLOAT16_ONE``: the plain codes of K distinct raw values in ascending
    order. counts: (K,) int >= 1, voxels holding each value. Returns (K,) int32 codes, non-decreasing, where only
    tied values may differ from ``codes``.
    """
    codes = np.asarray(codes, dtype=np.int32)
    used, first, size = np.unique(codes, return_index=True, return_counts=True)
    wanted = size - 1  # free codes a group could use on one side
    free_below = np.diff(used, prepend=-1) - 1
    free_above = np.diff(used, append=FLOAT16_ONE + 1) - 1
    # A free run between two groups: each side may take up to half, plus what the other side cannot use.
    wanted_by_lower = np.concatenate([[0], wanted[:-1]])
    wanted_by_upper = np.concatenate([wanted[1:], [0]])
    room_below = free_below - np.minimum(wanted_by_lower, free_below // 2)
    room_above = free_above - np.minimum(wanted_by_upper, free_above - free_above // 2)
    broken = codes.copy()
    for group in np.flatnonzero((size > 1) & (room_below + room_above > 0)):
        members = slice(first[group], first[group] + size[group])
        broken[members] += tie_offsets(np.asarray(counts[members]), int(room_below[group]), int(room_above[group]))
    return broken


def tie_offsets(counts: np.ndarray, room_below: int, room_above: int) -> np.ndarray:
    """Float16 steps that move one tie group's values apart: (m,) int, non-decreasing, in [-room_below, room_above].

    counts: (m,) voxels per distinct value, ascending raw order. The value with the most voxels keeps its code (among
    equals: the one leaving the group most distinct, then the fewest voxel-steps, then the lowest); the values below
    it take the free codes below, the lowest value farthest, one code each until the room runs out, and the values
    next to the kept one stay tied with it; likewise above.
    """
    counts = counts.astype(np.int64)
    m = counts.size
    index = np.arange(m)
    moved_below = np.minimum(index, room_below)  # values that step down when value j keeps its code
    moved_above = np.minimum(m - 1 - index, room_above)
    # Voxel-steps of the r outermost values stepping r, r-1, ..., 1 codes: r * (their voxels) - sum(position * voxels).
    voxels, weighted = np.concatenate([[0], np.cumsum(counts)]), np.concatenate([[0], np.cumsum(counts * index)])
    top_counts = counts[::-1]
    top_voxels = np.concatenate([[0], np.cumsum(top_counts)])
    top_weighted = np.concatenate([[0], np.cumsum(top_counts * index)])
    steps = (moved_below * voxels[moved_below] - weighted[moved_below]
             + moved_above * top_voxels[moved_above] - top_weighted[moved_above])  # fmt: skip
    distinct = 1 + moved_below + moved_above
    kept = int(np.lexsort((index, steps, -distinct, -counts))[0])
    offsets = np.zeros(m, dtype=np.int32)
    below, above = int(moved_below[kept]), int(moved_above[kept])
    offsets[:below] = np.arange(-below, 0)
    offsets[m - above:] = np.arange(1, above + 1)
    return offsets


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


@dataclass(frozen=True)
class ScoredVolume:
    """Raw scores of one volume in its stored geometry.

    scores: float32 of the effective stored shape (trailing length-1 axes dropped), higher = more anomalous; None
        when no score map was computed (the sample task with the method's own slice score).
    tissue: bool of that shape, each slice's tissue mask.
    sample: the raw sample score, the maximum over slices of the slice score.
    """

    scores: np.ndarray | None
    tissue: np.ndarray
    sample: float


def score_volume(path: Path, score_map: ScoreMap | None, axis: int = 2,
                 slice_score: SliceScore | None = None) -> ScoredVolume:  # fmt: skip
    """Raw scores of a NIfTI volume, slice by slice, and its raw sample score (the maximum over slices).

    score_map: (H, W) float32 image in [0, 1] and its ``origin`` (keyword: the slice of ``path``) -> (H, W) raw
        scores, higher = more anomalous; None computes no maps (then ``slice_score`` is needed).
    slice_score: (H, W) float32 image in [0, 1] and its ``origin`` (keyword) -> one raw score, the method's own
        (``slice_sample_score``); None: each slice map's ``SLICE_QUANTILE`` quantile over tissue.
    """
    if score_map is None and slice_score is None:
        raise ValueError("score_volume needs a score map or a slice score")
    header = read_header(path)
    shape = tuple(int(n) for n in header.stored_shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    volume = None if score_map is None else np.empty(shape, dtype=np.float32)
    tissue_volume = np.empty(shape, dtype=bool)
    sample = -np.inf
    for image in iter_slices(path, axis=axis):
        origin = SliceOrigin(path, image.meta.slice_index, axis)
        tissue = tissue_mask(image.pixels)
        if len(shape) == 2:
            index: tuple = (Ellipsis,)
        else:
            index = tuple(image.meta.slice_index if dim == axis else slice(None) for dim in range(3))
        tissue_volume[index] = tissue
        if score_map is not None:
            scores = np.asarray(score_map(image.pixels, origin=origin), dtype=np.float32)
            if scores.shape != image.pixels.shape or not np.isfinite(scores).all():
                raise PicardError(f"{path}: slice {image.meta.slice_index}: the method returned a {scores.shape} map "
                                  f"with non-finite values or of the wrong shape for a {image.pixels.shape} slice")
            volume[index] = scores
        if slice_score is None:
            value = float(np.quantile(scores[tissue] if tissue.any() else scores, SLICE_QUANTILE))
        else:
            value = float(slice_score(image.pixels, origin=origin))
            if not math.isfinite(value):
                raise PicardError(f"{path}: slice {image.meta.slice_index}: the method's sample score is {value}")
        sample = max(sample, value)
    return ScoredVolume(volume, tissue_volume, sample)


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


def run_case(path: Path, output_dir: Path, score_map: ScoreMap, settings: MoodSettings,
             slice_score: SliceScore | None = None) -> bool:  # fmt: skip
    """Score one MOOD case and write its output atomically; returns False (and does nothing) if it exists.

    slice_score: the sample task's slice score when the method has its own (``slice_sample_score``; no maps are
    computed then); None: the slice maps' quantiles.
    """
    destination = output_path(path, output_dir, settings.task)
    if destination.is_file():
        return False
    own = slice_score if settings.task == "sample" else None
    scored = score_volume(path, None if own is not None else score_map, settings.axis, own)
    if settings.task == "pixel":
        write_pixel_nifti(destination, path, pixel_scores(scored.scores, settings))
    else:
        atomic_write_text(destination, f"{float(squash(scored.sample, settings))!r}\n")
    return True


# --- calibration on normal volumes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """center and scale of g computed from a method's raw scores on normal volumes, and what they came from.

    task, axis: the MOOD task and slicing axis it was made for. method: JSON identity of the scorer (name,
    config, a digest of its weights or state), compared on reuse. normal_dir: the resolved folder of normal
    volumes; normal_volumes: their file names. n_voxels: tissue voxels scored over all of them. n_scores: the raw
    scores the quantiles were taken over (sampled tissue voxels for the pixel task, one per volume for the sample
    task). quantiles: quantile level (text) -> raw score. center, scale: g's parameters in raw-score units.
    """

    task: str
    axis: int
    method: dict[str, Any]
    normal_dir: str
    normal_volumes: tuple[str, ...]
    n_voxels: int
    n_scores: int
    quantiles: dict[str, float]
    center: float
    scale: float

    def __post_init__(self) -> None:
        if self.task not in TASKS or self.axis not in (0, 1, 2) or not isinstance(self.method, dict):
            raise ValueError(f"task {self.task!r}, axis {self.axis!r} or method {self.method!r} is invalid")
        if not (math.isfinite(self.center) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"center must be finite and scale positive, got {self.center} and {self.scale}")


def normal_volumes(folder: str | Path) -> list[Path]:
    """The normal NIfTI volumes to calibrate on (as ``nifti_inputs``); a missing or empty folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "folder of normal volumes to calibrate on not found")
    paths = nifti_inputs(folder)
    if not paths:
        raise InputError(folder, "no .nii.gz or .nii normal volumes to calibrate on")
    return paths


def calibrate(
    normal_dir: str | Path,
    score_map: ScoreMap,
    task: str,
    axis: int,
    method: dict[str, Any],
    *,
    progress: bool = True,
    slice_score: SliceScore | None = None,
) -> Calibration:
    """center and scale of g from the raw scores of the normal volumes in ``normal_dir`` (see the module docstring).

    The volumes are scored like the inputs (``score_volume`` with ``score_map`` along ``axis``). Pixel task: the
    quantiles of their tissue voxels' raw scores (a uniform sample of ``CALIBRATION_SAMPLE_SIZE`` when there are
    more); sample task: of their raw sample scores. center = q(``CENTER_QUANTILE``), scale = (center -
    q(``SPREAD_QUANTILE``)) / ``CALIBRATION_E_FOLDS``.
    method: JSON-serialisable identity of the scorer (``mood_identity``), recorded so that a reuse can be checked.
    progress: a tqdm bar over the volumes on stderr.
    slice_score: the sample task's own slice score, as ``run_case``'s (ignored for the pixel task).
    """
    from tqdm import tqdm

    paths = normal_volumes(normal_dir)
    rng = np.random.default_rng(CALIBRATION_SEED)
    voxels = np.empty(0, dtype=np.float32)
    keys = np.empty(0, dtype=np.float64)
    samples = []
    n_voxels = 0
    for path in tqdm(paths, unit="volume", desc="calibrating", disable=not progress, dynamic_ncols=True):
        own = slice_score if task == "sample" else None
        scored = score_volume(path, None if own is not None else score_map, axis, own)
        samples.append(scored.sample)
        n_voxels += int(np.count_nonzero(scored.tissue))
        if task == "pixel":
            tissue_scores = scored.scores[scored.tissue]
            # The voxels with the smallest independent uniform keys are a uniform sample of every voxel seen so
            # far, whatever the order and sizes of the volumes: memory stays bounded, and below the bound all
            # voxels are kept so the quantiles are exact.
            voxels = np.concatenate([voxels, tissue_scores])
            keys = np.concatenate([keys, rng.random(tissue_scores.size)])
            if voxels.size > CALIBRATION_SAMPLE_SIZE:
                keep = np.argpartition(keys, CALIBRATION_SAMPLE_SIZE - 1)[:CALIBRATION_SAMPLE_SIZE]
                voxels, keys = voxels[keep], keys[keep]
    scores = voxels.astype(np.float64) if task == "pixel" else np.asarray(samples, dtype=np.float64)
    if scores.size == 0:
        raise InputError(normal_dir, "the normal volumes hold no tissue voxels to calibrate on")
    low, high = (float(q) for q in np.quantile(scores, [SPREAD_QUANTILE, CENTER_QUANTILE]))
    if not high > low:
        raise InputError(normal_dir, f"the normal {task} scores have no spread (quantiles {SPREAD_QUANTILE} and "
                         f"{CENTER_QUANTILE} are both {high:.6g} over {scores.size} score(s)); give --center and "
                         "--scale instead")
    return Calibration(
        task=task,
        axis=axis,
        method=_plain(method),
        normal_dir=str(Path(normal_dir).resolve()),
        normal_volumes=tuple(path.name for path in paths),
        n_voxels=n_voxels,
        n_scores=int(scores.size),
        quantiles={str(SPREAD_QUANTILE): low, str(CENTER_QUANTILE): high},
        center=high,
        scale=(high - low) / CALIBRATION_E_FOLDS,
    )


def write_calibration(path: str | Path, calibration: Calibration) -> None:
    """Write ``calibration`` as JSON, atomically."""
    record = {"format": CALIBRATION_FORMAT, "format_version": CALIBRATION_FORMAT_VERSION,
              "n_volumes": len(calibration.normal_volumes), **to_dict(calibration)}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def read_calibration(path: str | Path) -> Calibration:
    """A calibration written by ``write_calibration``, checked."""
    path = Path(path)
    record = read_record(path, CALIBRATION_FORMAT, CALIBRATION_FORMAT_VERSION, "MOOD calibration")
    fields = {key: value for key, value in record.items() if key not in ("format", "format_version", "n_volumes")}
    try:
        return from_dict(Calibration, fields, where="calibration")
    except ConfigError as exc:
        raise CorruptFileError(path, str(exc)) from None


def check_calibration(calibration: Calibration, task: str, axis: int, method: dict[str, Any], where: Path) -> None:
    """Raise InputError (naming ``where``) unless ``calibration`` was made for this task, axis and scorer."""
    if calibration.task != task:
        raise InputError(where, f"calibration made for the {calibration.task} task, not the {task} task")
    if calibration.axis != axis:
        raise InputError(where, f"calibration made slicing along axis {calibration.axis}, not axis {axis}")
    ours = _plain(method)
    if calibration.method != ours:
        theirs = calibration.method
        keys = sorted(key for key in theirs.keys() | ours.keys() if theirs.get(key) != ours.get(key))
        raise InputError(where, f"calibration made for another method or model: "
                         f"{json.dumps({key: theirs.get(key) for key in keys})}, where this run has "
                         f"{json.dumps({key: ours.get(key) for key in keys})}")


def prepare_calibration(
    settings: MoodSettings,
    output_dir: str | Path,
    score_map: ScoreMap,
    method: dict[str, Any],
    *,
    progress: bool = True,
    slice_score: SliceScore | None = None,
) -> Calibration | None:
    """The calibration a run uses (None when ``settings`` ask for none), recorded in ``output_dir``.

    ``settings.calibration``: that file, checked against the task, axis and scorer identity ``method``.
    ``settings.calibrate``: the record already in ``output_dir`` when it was made for this scorer from the same
    normal volumes (a rerun resumes without scoring them again), else a new ``calibrate`` (with ``slice_score``,
    the sample task's own slice score). The record says how the outputs beside it were squashed, so a different
    one is refused, never replaced: outputs squashed by two calibrations would not compare.
    """
    recorded = Path(output_dir) / CALIBRATION_FILE
    if settings.calibration is not None:
        calibration = read_calibration(settings.calibration)
        check_calibration(calibration, settings.task, settings.axis, method, settings.calibration)
    elif settings.calibrate is not None:
        if recorded.is_file():
            calibration = read_calibration(recorded)
            check_calibration(calibration, settings.task, settings.axis, method, recorded)
            names = tuple(path.name for path in normal_volumes(settings.calibrate))
            if (calibration.normal_dir, calibration.normal_volumes) != (str(Path(settings.calibrate).resolve()), names):
                raise InputError(recorded, f"calibration made from other normal volumes than {settings.calibrate}; "
                                 "outputs here were squashed with it: remove them with it, or choose another "
                                 "output folder")
            return calibration
        calibration = calibrate(settings.calibrate, score_map, settings.task, settings.axis, method, progress=progress,
                                slice_score=slice_score)  # fmt: skip
    else:
        return None
    if not recorded.is_file():
        write_calibration(recorded, calibration)
    elif read_calibration(recorded) != calibration:
        raise InputError(recorded, "holds another calibration, with which outputs here were squashed: remove them "
                         "with it, or choose another output folder")
    return calibration


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so identities compare after a round trip."""
    return json.loads(json.dumps(value))
