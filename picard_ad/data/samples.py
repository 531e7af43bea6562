"""Typed dataset samples, patient-level splits, and a validation set that needs no labelled anomaly.

A :class:`Sample` is one 2-D image with its label and masks. Its arrays are either held or produced on demand by a
loader (any callable returning the array), so listing a dataset of large volumes decodes nothing. The loaders here
(:class:`PhantomArray`, :class:`SliceImage`, :class:`VolumeSlice`, :class:`LabelSlice`, :class:`AnnotatedMask`,
:class:`Shrunk`) are small picklable objects; the adapters in :mod:`picard_ad.data.datasets` build samples with them.

Zimmerer's thesis (§4.1, §4.2, lessons in §5) warns against tuning on labelled anomalies: validation data with
*synthetic* anomalies in normal images gives exact masks and leaks nothing about the test anomalies, which is what
:func:`synthetic_validation_set` builds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from picard_ad.data.phantoms import Phantom, PhantomConfig, generate_phantom
from picard_ad.data.synthetic import (
    ANOMALY_KINDS,
    SyntheticAnomalyConfig,
    insert_anomaly,
)
from picard_ad.data.tissue import tissue_mask
from picard_ad.errors import InputError
from picard_ad.io import SliceOrigin, iter_slices, read_image, read_mask
from picard_ad.io.annotations import AnnotationSet
from picard_ad.io.orientation import Orientation, detect_breast_side

__all__ = [
    "AnnotatedMask",
    "ArraySource",
    "LabelSlice",
    "Label",
    "LoadedSample",
    "PhantomArray",
    "Sample",
    "Shrunk",
    "SliceImage",
    "VolumeSlice",
    "shrunk",
    "shrunk_shape",
    "split_by_patient",
    "synthetic_validation_set",
]

Label = Literal["normal", "abnormal"]
ArraySource = np.ndarray | Callable[[], np.ndarray]


def _resolve(source: ArraySource) -> np.ndarray:
    return np.asarray(source() if callable(source) else source)


@dataclass(frozen=True, eq=False)
class LoadedSample:
    """A sample's arrays, checked to agree in shape: image (H, W) float32 in [0, 1]; masks (H, W) bool."""

    image: np.ndarray
    lesion_mask: np.ndarray
    tissue_mask: np.ndarray


@dataclass(frozen=True, eq=False)
class Sample:
    """One 2-D image of a dataset with its label and masks; arrays are held or loaded on demand.

    Attributes:
        name: unique within its dataset.
        patient_id: the patient (case) the image belongs to; :func:`split_by_patient` never separates a patient.
        label: "normal" (no lesion) or "abnormal".
        image: (H, W) float32 in [0, 1], tissue bright, or a loader returning it.
        lesion_mask: (H, W) bool lesion mask or its loader; None exactly when the sample is normal.
        tissue_mask: (H, W) bool tissue mask or its loader; None derives it from the image
            (``picard_ad.data.tissue.tissue_mask``, dark background).
        path: the file the image was read from; None for generated images.
        slice_index: the slice of ``path`` (0 for a 2-D image); None for generated images.
        axis: the volume axis ``slice_index`` counts along (NIfTI).
        normalization: how the file's values were mapped to [0, 1] (``read_image``).
        orientation: the flip from the stored file to these arrays (``orientation.undo`` maps results back).
        info: JSON-ready provenance, e.g. a phantom's seed or a synthetic anomaly's kind and parameters.
    """

    name: str
    patient_id: str
    label: Label
    image: ArraySource
    lesion_mask: ArraySource | None = None
    tissue_mask: ArraySource | None = None
    path: Path | None = None
    slice_index: int | None = None
    axis: int = 2
    normalization: str = "auto"
    orientation: Orientation = field(default_factory=Orientation)
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label not in ("normal", "abnormal"):
            raise ValueError(f"sample '{self.name}': label must be 'normal' or 'abnormal', got {self.label!r}")
        if (self.label == "normal") != (self.lesion_mask is None):
            raise ValueError(f"sample '{self.name}': a normal sample has no lesion mask and an abnormal one needs one")

    @property
    def is_normal(self) -> bool:
        return self.label == "normal"

    @property
    def origin(self) -> SliceOrigin | None:
        """The file slice the image was read from (a synthetic anomaly's: its base's); None for generated images."""
        if self.path is None or self.slice_index is None:
            return None
        return SliceOrigin(Path(self.path), self.slice_index, self.axis, self.normalization)

    def load_image(self) -> np.ndarray:
        """The image, (H, W) float32 in [0, 1]."""
        image = _resolve(self.image).astype(np.float32, copy=False)
        if image.ndim != 2:
            raise InputError(self.path, f"sample '{self.name}': expected a 2-D image, got shape {image.shape}")
        return image

    def load(self) -> LoadedSample:
        """Image, lesion mask (all False for a normal sample) and tissue mask, checked to agree in shape."""
        image = self.load_image()
        lesion = np.zeros(image.shape, bool) if self.lesion_mask is None else _resolve(self.lesion_mask).astype(bool)
        tissue = tissue_mask(image) if self.tissue_mask is None else _resolve(self.tissue_mask).astype(bool)
        for what, mask in (("lesion", lesion), ("tissue", tissue)):
            if mask.shape != image.shape:
                raise InputError(
                    self.path, f"sample '{self.name}': {what} mask is {mask.shape} but the image is {image.shape}"
                )
        return LoadedSample(image, lesion, tissue)

    def left_aligned(self) -> Sample:
        """This sample loaded and, when the breast touches the right edge, flipped so that it touches the left.

        The masks follow the image and ``orientation`` records the flip (composed with any earlier one).
        """
        arrays = self.load()
        flip = detect_breast_side(arrays.image) == "R"
        step = Orientation(flip_horizontal=flip)
        image, lesion, tissue = (
            np.ascontiguousarray(step.apply(a)) for a in (arrays.image, arrays.lesion_mask, arrays.tissue_mask)
        )
        return dataclasses.replace(
            self,
            image=image,
            lesion_mask=None if self.is_normal else lesion,
            tissue_mask=tissue,
            orientation=Orientation(flip_horizontal=self.orientation.flip_horizontal != flip),
        )


# --- loaders: picklable callables that read one array on demand ---------------------------------------------------


@functools.lru_cache(maxsize=4)
def _phantom(config: PhantomConfig, seed: int, n_lesions: int) -> Phantom:
    # Image, lesion and tissue of one phantom are usually asked for together: generate it once.
    phantom = generate_phantom(config, seed, n_lesions)
    for array in (phantom.image, phantom.tissue_mask):
        array.flags.writeable = False  # shared by later calls: a caller must not change it in place
    return phantom


@dataclass(frozen=True)
class PhantomArray:
    """Loads one array of a generated phantom: "image", "lesion" or "tissue"."""

    config: PhantomConfig
    seed: int
    n_lesions: int
    part: Literal["image", "lesion", "tissue"]

    def __call__(self) -> np.ndarray:
        phantom = _phantom(self.config, self.seed, self.n_lesions)
        if self.part == "image":
            return phantom.image
        return phantom.lesion_mask if self.part == "lesion" else phantom.tissue_mask


@dataclass(frozen=True)
class SliceImage:
    """Loads one slice of an image file with ``read_image``."""

    path: Path
    index: int
    normalization: str

    def __call__(self) -> np.ndarray:
        return read_image(self.path, self.index, normalization=self.normalization).pixels


def _stamp(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_mtime_ns, status.st_size


@functools.lru_cache(maxsize=1)
def _volume_slices(path: Path, axis: int, normalization: str, stamp: tuple[int, int]) -> tuple[np.ndarray, ...]:
    # A NIfTI slice costs a decompression of the whole volume (and "auto" normalises over the volume), so the
    # slices of the last volume are kept: reading a case slice by slice decodes it once. ``stamp`` renews the
    # entry when the file changes.
    slices = tuple(image.pixels for image in iter_slices(path, axis=axis, normalization=normalization))
    for array in slices:
        array.flags.writeable = False
    return slices


@dataclass(frozen=True)
class VolumeSlice:
    """Loads slice ``index`` along ``axis`` of a NIfTI volume, through the one-volume cache."""

    path: Path
    index: int
    axis: int
    normalization: str

    def __call__(self) -> np.ndarray:
        return _volume_slices(self.path, self.axis, self.normalization, _stamp(self.path))[self.index]


@dataclass(frozen=True)
class LabelSlice:
    """Loads slice ``index`` of a label image as a bool mask (stored value > 0)."""

    path: Path
    index: int
    axis: int

    def __call__(self) -> np.ndarray:
        return read_mask(self.path, self.index, axis=self.axis)


@dataclass(frozen=True, eq=False)
class AnnotatedMask:
    """Draws the lesion mask of ``image`` (a file path or annotation name) from an AnnotationSet."""

    annotations: AnnotationSet
    image: str
    shape: tuple[int, int]
    index: int

    def __call__(self) -> np.ndarray:
        return self.annotations.mask_for(self.image, self.shape, index=self.index)


def shrunk_shape(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``shape`` (rows, cols) scaled, aspect kept, so that its longer side is at most ``max_side`` (rounded, at
    least 1 px); unchanged when it already fits."""
    scale = max_side / max(shape)
    if scale >= 1.0:
        return tuple(shape)
    return tuple(max(1, round(side * scale)) for side in shape)


@dataclass(frozen=True, eq=False)
class Shrunk:
    """Loads an array from ``source`` and shrinks it, aspect kept, so its longer side is at most ``max_side``:
    an image ((H, W) in [0, 1]) bilinearly with antialiasing, kept in [0, 1]; a mask as the bilinear resize of its
    0/1 values kept where >= 0.5 (the resizes of ``picard_ad.data.preprocessing.resize``). An array that fits is
    returned as loaded."""

    source: ArraySource
    max_side: int
    mask: bool = False

    def __call__(self) -> np.ndarray:
        from picard_ad.data.preprocessing.resize import resize_bilinear, resize_mask

        array = _resolve(self.source)
        shape = shrunk_shape(array.shape, self.max_side)
        if shape == array.shape:
            return array
        if self.mask:
            return resize_mask(array, shape)
        return np.clip(resize_bilinear(array, shape), 0.0, 1.0)  # float rounding may overshoot 1 by an ulp


def shrunk(sample: Sample, max_side: int) -> Sample:
    """``sample`` with its image and masks loaded through ``Shrunk`` (longer side at most ``max_side`` pixels), e.g.
    a 4,500 x 2,800 px mammogram read at 512 px when a benchmark's methods look at 64-128 px."""
    def wrap(source: ArraySource | None, mask: bool) -> ArraySource | None:
        return None if source is None else Shrunk(source, max_side, mask)

    return dataclasses.replace(sample, image=wrap(sample.image, False), lesion_mask=wrap(sample.lesion_mask, True),
                               tissue_mask=wrap(sample.tissue_mask, True))  # fmt: skip


# --- patient-level splits ------------------------------------------------------------------------------------------


def _patient_counts(sizes: Mapping[str, float | int], n_patients: int) -> dict[str, int]:
    """Patients per split: integers are counts, floats fractions (largest remainders get the leftovers)."""
    if not sizes:
        raise ValueError("sizes must name at least one split")
    values = list(sizes.values())
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        if any(v < 0 for v in values) or sum(values) != n_patients:
            raise ValueError(f"patient counts must be >= 0 and sum to the {n_patients} patients, got {dict(sizes)}")
        return {name: int(v) for name, v in sizes.items()}
    if not all(isinstance(v, float) for v in values):
        raise ValueError(f"give all sizes as patient counts (int) or all as fractions (float), got {dict(sizes)}")
    if any(v < 0 for v in values) or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {dict(sizes)}")
    exact = {name: fraction * n_patients for name, fraction in sizes.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - counts[name]), list(sizes).index(name)))
    for name in by_remainder[: n_patients - sum(counts.values())]:
        counts[name] += 1
    return counts


def split_by_patient(
    samples: Sequence[Sample], sizes: Mapping[str, float | int], seed: int = 0
) -> dict[str, list[Sample]]:
    """Split samples so that all images of one patient land in the same split.

    Args:
        samples: the dataset.
        sizes: split name -> number of patients (int; they must sum to the number of patients) or fraction of the
            patients (float; they must sum to 1, rounded by largest remainder), e.g. ``{"train": 0.8, "val": 0.2}``.
        seed: patients are shuffled with this seed; the result does not depend on the order of ``samples``.

    Returns:
        split name -> its samples, in their order in ``samples``.
    """
    patients = sorted({sample.patient_id for sample in samples})
    counts = _patient_counts(sizes, len(patients))
    order = np.random.default_rng(seed).permutation(len(patients))
    split_of: dict[str, str] = {}
    start = 0
    for name, count in counts.items():
        for position in order[start : start + count]:
            split_of[patients[position]] = name
        start += count
    splits: dict[str, list[Sample]] = {name: [] for name in counts}
    for sample in samples:
        splits[split_of[sample.patient_id]].append(sample)
    return splits


# --- synthetic validation set --------------------------------------------------------------------------------------


class _BaseImages:
    """Image and tissue mask of the base samples, loaded when first needed; the last few are kept."""

    def __init__(self, samples: Sequence[Sample]):
        self.samples = samples
        self.arrays = functools.lru_cache(maxsize=4)(self._load)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        loaded = self.samples[index].load()
        return loaded.image, loaded.tissue_mask


def synthetic_validation_set(
    samples: Sequence[Sample],
    n: int,
    kinds: Sequence[str] = ANOMALY_KINDS,
    seed: int = 0,
    config: SyntheticAnomalyConfig = SyntheticAnomalyConfig(),
) -> list[Sample]:
    """Abnormal samples made from normal ones by inserting one synthetic anomaly each, with its exact mask.

    Follows ``picard_ad.data.synthetic.make_synthetic_set`` draw for draw (so the same images give the same
    anomalies), but loads base images one at a time instead of holding the whole base set in memory: sample ``i``
    uses a generator seeded with (seed, i), kind ``kinds[i % len(kinds)]``, a random base image, and for "paste"
    another random base image as the source.

    Args:
        samples: normal samples (images (H, W) float in [0, 1]); anomalies lie inside their tissue masks.
        n: number of abnormal samples to make.
        kinds: anomaly kinds, each one of ``picard_ad.data.synthetic.ANOMALY_KINDS``.
        seed: base seed.
        config: parameter ranges of the anomalies.

    Returns:
        n abnormal samples named ``{base name}_synthetic{i:04d}_{kind}`` with the base's patient, path, slice and
        orientation, the base's tissue mask, and in ``info`` ``synthetic: True`` with the anomaly's parameters.
    """
    unknown = [kind for kind in kinds if kind not in ANOMALY_KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty list of {', '.join(ANOMALY_KINDS)}; got {list(kinds)}")
    if not samples:
        raise ValueError("no normal samples to insert anomalies into")
    abnormal = [sample.name for sample in samples if not sample.is_normal]
    if abnormal:
        raise ValueError(f"synthetic anomalies go into normal samples only; abnormal: {', '.join(abnormal[:3])}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    bases = _BaseImages(samples)
    made = []
    for index in range(n):
        rng = np.random.default_rng([seed, index])
        kind = kinds[index % len(kinds)]
        base_index = int(rng.integers(len(samples)))
        image, tissue = bases.arrays(base_index)
        source = source_tissue = None
        extra: dict[str, Any] = {"synthetic": True, "index": index, "base": samples[base_index].name}
        if kind == "paste":
            other = int(rng.integers(max(len(samples) - 1, 1)))
            source_index = other + 1 if len(samples) > 1 and other >= base_index else other
            source, source_tissue = bases.arrays(source_index)
            extra["source"] = samples[source_index].name
        base = samples[base_index]
        try:
            synthetic = insert_anomaly(image, kind, rng, tissue, config, source, source_tissue)
        except ValueError as exc:
            raise ValueError(f"sample '{base.name}': {exc}") from None
        made.append(
            dataclasses.replace(
                base,
                name=f"{base.name}_synthetic{index:04d}_{kind}",
                label="abnormal",
                image=synthetic.image,
                lesion_mask=synthetic.mask,
                tissue_mask=tissue,
                info={**synthetic.info, **extra},
            )
        )
    return made
