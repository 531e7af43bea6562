"""Tiny MOOD-style NIfTI cases and a ``picard-ad mood`` runner for tests (importable: pytest puts tests/ on the
path)."""

import nibabel
import numpy as np
from click.testing import CliRunner

from picard_ad.cli import main

AFFINE = np.array([[0.0, -1.2, 0.0, 40.0], [0.9, 0.0, 0.0, -3.0], [0.0, 0.0, 2.0, 7.5], [0.0, 0.0, 0.0, 1.0]])


def write_case(path, bright_block: bool, shape=(28, 24, 5)):
    rng = np.random.default_rng(len(path.name))
    data = np.zeros(shape, dtype=np.int16)
    data[3:-3, 2:-2] = rng.integers(80, 120, size=data[3:-3, 2:-2].shape)
    if bright_block:
        data[(slice(10, 16), slice(8, 14), slice(1, 4))[: len(shape)]] = 400
    nibabel.save(nibabel.Nifti1Image(data, AFFINE), path)


def write_cases(folder):
    """normal.nii.gz, abnormal.nii.gz (a bright block) and a 2D flat.nii in a new ``folder``; returns it."""
    folder.mkdir()
    write_case(folder / "normal.nii.gz", bright_block=False)
    write_case(folder / "abnormal.nii.gz", bright_block=True)
    write_case(folder / "flat.nii", bright_block=True, shape=(20, 16))
    return folder


def mood(*args):
    return CliRunner().invoke(main, ["mood", *map(str, args)])
