"""The benchmark's samples: the configured dataset and its seeded patient-level train/test split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from picard_ad.benchmark.config import DataConfig
from picard_ad.data.datasets import (
    bcs_dbt_dataset,
    folder_dataset,
    nifti_label_dataset,
    phantom_dataset,
)
from picard_ad.data.samples import Sample
from picard_ad.errors import ConfigError


def load_dataset(data: DataConfig, seed: int) -> list[Sample]:
    """All samples of the configured dataset."""
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


def _evenly(samples: list[Sample], limit: int | None) -> list[Sample]:
    if limit is None or len(samples) <= limit:
        return samples
    return [samples[int(i)] for i in np.linspace(0, len(samples) - 1, limit).round().astype(int)]


def _test_patients(patients: list[str], wanted: float, seed: int) -> set[str]:
    """A seeded random choice of ``wanted`` (an int count, or a float fraction rounded) of the sorted ``patients``."""
    count = min(len(patients), round(wanted * len(patients)) if isinstance(wanted, float) else wanted)
    order = np.random.default_rng(seed).permutation(len(patients))
    return {patients[int(i)] for i in order[:count]}


def split_dataset(samples: Sequence[Sample], data: DataConfig, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, test): train holds the normal images of the patients outside the test split."""
    abnormal = sorted({s.patient_id for s in samples if not s.is_normal})
    normal_only = sorted({s.patient_id for s in samples} - set(abnormal))
    test = _test_patients(abnormal, data.test_abnormal_patients, seed)
    test |= _test_patients(normal_only, data.test_normal_patients, seed + 1)
    train = [s for s in samples if s.patient_id not in test and s.is_normal]
    tested = [s for s in samples if s.patient_id in test]
    train, tested = _evenly(train, data.max_train_images), _evenly(tested, data.max_test_images)
    if not train:
        raise ConfigError("the benchmark's training split holds no normal image; test fewer patients")
    if not any(not s.is_normal for s in tested):
        raise ConfigError("the benchmark's test split holds no abnormal image; test more abnormal patients")
    return train, tested
