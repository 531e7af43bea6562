"""NIfTI reader: 2D and 3D slicing without reorientation, volume-wide normalisation, spacing, errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from picard_ad.errors import CorruptFileError, InputError, UnsupportedFormatError
from picard_ad.io import iter_slices, read_header, read_image, read_mask


def _save(path, data, zooms=None):
    image = nib.Nifti1Image(np.asarray(data), np.eye(4))
    if zooms is not None:
        image.header.set_zooms(zooms)
    nib.save(image, path)
    return path


def _volume_with_outliers() -> np.ndarray:
    """20 x 20 x 25 float32: values 0..99 (100 voxels each) plus 5 outliers of 5000.

    The 99.9th percentile of its 10,000 voxels is 99 (the 5 outliers sit above it) and the minimum is 0, so
    normalization="auto" maps a voxel x to min(x / 99, 1).
    """
    values = np.repeat(np.arange(100, dtype=np.float32), 100)
    values[[0, 1234, 4321, 7777, 9999]] = 5000.0
    return values.reshape(20, 20, 25)


def test_auto_normalisation_is_volume_wide(tmp_path):
    data = _volume_with_outliers()
    path = _save(tmp_path / "vol.nii.gz", data)
    for index in (0, 12, 24):
        image = read_image(path, index)
        np.testing.assert_allclose(image.pixels, np.minimum(data[:, :, index] / 99, 1), atol=1e-6)
        assert image.meta.normalization == "volume min..99.9th percentile [0, 99] -> [0,1], clipped"
    header = read_header(path)
    assert header.normalization == "volume min..99.9th percentile -> [0,1], clipped"
    assert header.compressed and header.format == "nifti" and header.stored_dtype == "float32"


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slices_keep_the_stored_axes(tmp_path, axis):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = _save(tmp_path / "v.nii", data, zooms=(0.5, 0.7, 2.0))
    slices = list(iter_slices(path, axis=axis, normalization="minmax"))
    assert len(slices) == data.shape[axis]
    spacing = tuple(z for i, z in enumerate((0.5, 0.7, 2.0)) if i != axis)
    for index, image in enumerate(slices):
        stored = np.take(data, index, axis=axis)  # rows = first remaining stored axis
        expected = (stored - stored.min()) / (stored.max() - stored.min())
        np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
        assert image.meta.spacing == pytest.approx(spacing)
        assert image.meta.stored_shape == (4, 5, 6) and image.meta.slice_index == index


def test_two_dimensional_and_single_slice_images(tmp_path):
    flat = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for name, data in [("flat.nii", flat), ("one.nii", flat[:, :, None]), ("padded.nii", flat[:, :, None, None])]:
        path = _save(tmp_path / name, data)
        header = read_header(path)
        assert (header.n_slices, header.rows, header.cols) == (1, 3, 4)
        np.testing.assert_allclose(read_image(path, normalization="bits").pixels, flat / 255, atol=1e-6)


def test_read_mask_is_label_above_zero(tmp_path):
    labels = np.zeros((6, 7, 3), dtype=np.uint8)
    labels[1:3, 2:5, 1] = 2
    labels[4, 6, 1] = 4
    mask = read_mask(_save(tmp_path / "seg.nii.gz", labels), 1)
    assert mask.dtype == bool and mask.shape == (6, 7)
    np.testing.assert_array_equal(mask, labels[:, :, 1] > 0)


def test_four_dimensional_image_is_refused(tmp_path):
    path = _save(tmp_path / "fmri.nii", np.zeros((4, 5, 6, 2), dtype=np.float32))
    with pytest.raises(UnsupportedFormatError, match=r"4D NIfTI \(shape \(4, 5, 6, 2\)\)") as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_nan_values_are_refused(tmp_path):
    data = np.ones((4, 4, 3), dtype=np.float32)
    data[2, 2, 0] = np.nan
    path = _save(tmp_path / "nan.nii", data)
    with pytest.raises(CorruptFileError, match="1 pixel values are NaN or infinite") as error:
        read_image(path, 2)  # the NaN is in another slice, but auto normalisation looks at the whole volume
    assert str(path) in str(error.value)
    with pytest.raises(CorruptFileError, match="NaN"):
        read_image(path, 0, normalization="minmax")
    assert read_image(path, 1, normalization="minmax").pixels.max() == 0.0  # a constant slice maps to 0


def test_window_is_dicom_only(tmp_path):
    path = _save(tmp_path / "v.nii", np.zeros((3, 3, 2), dtype=np.float32))
    with pytest.raises(InputError, match="NIfTI files have none"):
        read_image(path, normalization="window")
    with pytest.raises(InputError, match="float32 data has no stored bit range"):
        read_image(path, normalization="bits")


def test_truncated_nifti(tmp_path):
    whole = _save(tmp_path / "whole.nii.gz", np.random.default_rng(0).random((32, 32, 16), dtype=np.float32))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(whole.read_bytes()[:4000])
    with pytest.raises(CorruptFileError) as error:
        read_image(cut)
    assert str(cut) in str(error.value)


def test_slice_out_of_range_depends_on_axis(tmp_path):
    path = _save(tmp_path / "v.nii", np.zeros((3, 4, 5), dtype=np.float32))
    assert read_image(path, 3, axis=1).pixels.shape == (3, 5)
    with pytest.raises(InputError, match=r"valid 0\.\.2"):
        read_image(path, 3, axis=0)


def test_zero_size_image(tmp_path):
    path = _save(tmp_path / "empty.nii", np.zeros((0, 4, 5), dtype=np.float32))
    with pytest.raises(CorruptFileError, match=r"zero size \(shape \(0, 4, 5\)\)") as error:
        read_header(path)
    assert str(path) in str(error.value)
