"""The benchmark's samples: the configured dataset, its seeded patient-level train/test split, and the synthetic
abnormal images (``picard_ad.data.synthetic``) added to the test split or made for label-free validation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from picard_ad.benchmark.config import DataConfig
from picard_ad.data.datasets import (
    bcs_dbt_dataset,
    folder_dataset,
    nifti_label_dataset,
    phantom_dataset,
)
from picard_ad.data.samples import Sample, shrunk, synthetic_validation_set
from picard_ad.data.synthetic import SyntheticAnomalyConfig
from picard_ad.data.synthetic_regions import tissue_depth
from picard_ad.errors import ConfigError


def load_dataset(data: DataConfig, seed: int) -> list[Sample]:
    """All samples of the configured dataset, shrunk to ``data.max_side`` when set."""
    samples = _read_dataset(data, seed)
    return samples if data.max_side is None else [shrunk(sample, data.max_side) for sample in samples]


def _read_dataset(data: DataConfig, seed: int) -> list[Sample]:
    if data.kind == "phantoms":
        return phantom_dataset(data.n_normal, data.n_abnormal, data.phantom_config(), seed)
    if data.kind == "folder":
        return folder_dataset(
            data.images_dir, data.annotations, patient_pattern=data.patient_pattern, normalization=data.normalization
        )
    if data.kind == "bcs-dbt":
        return bcs_dbt_dataset(
            data.boxes_csv, data.filepaths_csv, data.root, data.normal_list, normalization=data.normalization
        )
    return nifti_label_dataset(
        data.root, data.image_glob, data.label_glob, data.brain_mask_glob, data.axis, normalization=data.normalization
    )


def data_warnings(data: DataConfig) -> list[str]:
    """What the reader of a benchmark on this data must know because it can bias the results."""
    warnings = []
    if data.kind == "folder" and data.patient_pattern is None:
        warnings.append(
            "folder dataset without patient_pattern: every image counts as its own patient, so images of one "
            "patient may sit in both the training and the test split (set patient_pattern to split by patient)"
        )
    return warnings


def is_synthetic(sample: Sample) -> bool:
    """Whether ``sample`` carries a synthetic anomaly (``picard_ad.data.samples.synthetic_validation_set``)."""
    return bool(sample.info.get("synthetic"))


@dataclass(frozen=True)
class BenchmarkSplit:
    """The benchmark's images.

    train: normal images that fit the methods.
    test: the test patients' images, then ``data.synthetic_test`` synthetic abnormal images made from the normal ones.
    validation: ``data.synthetic_validation`` synthetic abnormal images made from the normal images of training
        patients held out from ``train`` (never used to fit); thresholds are chosen on them.
    """

    train: list[Sample]
    test: list[Sample]
    validation: list[Sample]


def _evenly(samples: list[Sample], limit: int | None) -> list[Sample]:
    if limit is None or len(samples) <= limit:
        return samples
    return [samples[int(i)] for i in np.linspace(0, len(samples) - 1, limit).round().astype(int)]


def _chosen_patients(patients: list[str], wanted: float, seed: int, at_least: int = 0) -> set[str]:
    """A seeded random choice of ``wanted`` (an int count, or a float fraction rounded, but at least ``at_least``)
    of the sorted ``patients``."""
    count = round(wanted * len(patients)) if isinstance(wanted, float) else wanted
    count = min(len(patients), max(at_least, count))
    order = np.random.default_rng(seed).permutation(len(patients))
    return {patients[int(i)] for i in order[:count]}


def _roomy(bases: list[Sample], config: SyntheticAnomalyConfig) -> list[Sample]:
    """The ``bases`` whose tissue holds the largest anomaly of ``config`` (deepest tissue point beyond its largest
    semi-major axis plus a pixel), so that no drawn base or paste source fails; slices at the edge of a volume
    (a rim of brain) drop out."""
    kept = []
    for sample in bases:
        tissue = sample.load().tissue_mask
        largest = max(config.min_radius_px, config.radius_fraction[1] * min(tissue.shape))
        if tissue.any() and tissue_depth(tissue).max() > largest + 1.0:
            kept.append(sample)
    return kept


def synthetic_samples(bases: list[Sample], n: int, kinds: Sequence[str], seed: int, key: str) -> list[Sample]:
    """``n`` synthetic abnormal samples made from those normal ``bases`` that can hold any anomaly; errors name the
    config ``key`` (under ``data.``)."""
    if n == 0:
        return []
    roomy = _roomy(bases, SyntheticAnomalyConfig())  # the config synthetic_validation_set draws from
    if bases and not roomy:
        raise ConfigError(f"data.{key}: no base image has tissue deep enough for the largest synthetic anomaly")
    bases = roomy
    try:
        return synthetic_validation_set(bases, n, kinds, seed)
    except ValueError as exc:  # e.g. a tissue mask too small to hold an anomaly
        raise ConfigError(f"data.{key}: {exc}") from None


def split_dataset(samples: Sequence[Sample], data: DataConfig, seed: int) -> BenchmarkSplit:
    """Patient-level split: the test patients' images (plus synthetic ones), the others' normal images for training,
    some of those patients held out as bases of the synthetic validation set when ``data.synthetic_validation``.

    The test anomalies are drawn with ``seed``, the validation anomalies with ``seed + 1``.
    """
    abnormal = sorted({s.patient_id for s in samples if not s.is_normal})
    normal_only = sorted({s.patient_id for s in samples} - set(abnormal))
    if data.test_patients is None:
        test = _chosen_patients(abnormal, data.patient_share("test_abnormal"), seed)
        test |= _chosen_patients(normal_only, data.patient_share("test_normal"), seed + 1)
    else:
        test = set(data.test_patients)
        unknown = sorted(test - set(abnormal) - set(normal_only))
        if unknown:
            known = sorted(abnormal + normal_only)
            raise ConfigError(f"data.test_patients: no patient {unknown[0]!r} in the dataset; its patients are "
                              f"{', '.join(known[:10])}" + (" ..." if len(known) > 10 else ""))
    train = [s for s in samples if s.patient_id not in test and s.is_normal]
    held_out = set()
    if data.synthetic_validation:
        train_patients = sorted({s.patient_id for s in train})
        held_out = _chosen_patients(train_patients, data.patient_share("synthetic_validation"), seed + 2, at_least=1)
    bases = [s for s in train if s.patient_id in held_out]
    train = [s for s in train if s.patient_id not in held_out]
    tested = [s for s in samples if s.patient_id in test]
    train, tested = _evenly(train, data.max_train_images), _evenly(tested, data.max_test_images)
    if not train:
        raise ConfigError(
            "the benchmark's training split holds no normal image; test fewer patients"
            + (" or hold out fewer for synthetic validation" if held_out else "")
        )
    normal_tested = [s for s in tested if s.is_normal]
    if data.synthetic_test and not normal_tested:
        raise ConfigError(
            "data.synthetic_test: the test split holds no normal image to insert synthetic anomalies into; test more "
            "normal patients (test_normal_patients or test_normal_fraction)"
        )
    tested += synthetic_samples(normal_tested, data.synthetic_test, data.synthetic_kinds, seed, "synthetic_test")
    if not any(not s.is_normal for s in tested):
        raise ConfigError(
            "the benchmark's test split holds no abnormal image; test more abnormal patients or add synthetic_test"
        )
    validation = synthetic_samples(
        bases, data.synthetic_validation, data.synthetic_kinds, seed + 1, "synthetic_validation"
    )
    return BenchmarkSplit(train, tested, validation)
