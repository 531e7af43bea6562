"""Strict JSON: what picard-ad writes beside its outputs has no bare NaN or Infinity."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel
import numpy as np
import pytest

from picard_ad.io import read_header
from picard_ad.io.writers import dumps_json, strict_json


def test_non_finite_numbers_become_null_and_numpy_values_plain():
    value = {"a": float("nan"), "b": [np.float32(np.inf), np.float64(2.5), (1, np.int64(3))], 4: Path("x"),
             "c": np.array([1.0, np.nan])}  # fmt: skip
    assert strict_json(value) == {"a": None, "b": [None, 2.5, [1, 3]], "4": "x", "c": [1.0, None]}
    text = dumps_json(value)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda name: pytest.fail(name))["b"] == [None, 2.5, [1, 3]]


def test_nifti_with_infinite_voxel_size_has_no_spacing(tmp_path):
    image = nibabel.Nifti1Image(np.zeros((6, 5, 2), dtype=np.float32), np.eye(4))
    image.header["pixdim"][1:4] = [np.inf, 1.0, 1.0]
    nibabel.save(image, tmp_path / "v.nii")
    header = read_header(tmp_path / "v.nii")
    assert header.spacing is None
    assert "Infinity" not in dumps_json(header.to_dict())
