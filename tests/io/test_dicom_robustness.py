"""DICOM inputs that used to fail badly: malformed header values, pixel data shorter than the header, deflated
and mis-encoded files, LUT sequences, and the fallbacks the reader takes (recorded as notes, warned once)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_sources import pydicom_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence

from picard_ad.errors import CorruptFileError
from picard_ad.io import read_header, read_image
from picard_ad.io.base import ReadWarning, luma

ROW = np.array([[0, 50, 75, 100, 125, 150, 200]])



def _reference(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


# --- header values and pixel data length ---------------------------------------------------------------------------


def test_malformed_number_of_frames_is_a_clear_error():
    path = pydicom_file("badVR.dcm")  # NumberOfFrames (IS) holds '1A'
    with pytest.raises(CorruptFileError) as error:
        read_header(path)
    assert str(error.value) == f"{path}: NumberOfFrames '1A' is not a whole number"


def test_truncated_pixel_data_is_refused_by_the_header_check():
    path = pydicom_file("MR_truncated.dcm")  # 8192 bytes of pixel data declared, 8130 in the file
    with pytest.raises(CorruptFileError, match=r"truncated file: the pixel data ends after 8130 of its 8192 bytes"):
        read_header(path)
    with pytest.raises(CorruptFileError, match="truncated file"):  # the same check before decoding
        read_image(path)


def test_sixteen_bit_header_over_eight_bit_data_is_refused(make_dicom):
    def sixteen_bits(ds: Dataset) -> None:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15  # the 20 x 30 bytes stay 8 bit

    path = make_dicom("mismatch.dcm", np.full((20, 30), 7), bits_stored=8, edit=sixteen_bits)
    with pytest.raises(CorruptFileError) as error:
        read_header(path)
    assert str(error.value) == (
        f"{path}: pixel data holds 600 bytes, but the header (20 x 30 x 1 frame(s) x 1 sample(s) x 16 bits) needs "
        "1200: the header does not describe the data"
    )


def test_pixel_data_of_exactly_the_needed_length_and_padded_odd_length_read(make_dicom):
    odd = make_dicom("odd.dcm", np.arange(15).reshape(3, 5), bits_stored=8)  # 15 bytes, padded to 16 on disk
    assert read_header(odd).rows == 3
    pixels = read_image(odd, normalization="minmax").pixels
    np.testing.assert_allclose(pixels, np.arange(15).reshape(3, 5) / 14, atol=1e-7)


def test_invalid_dicom_error_has_no_force_advice(tmp_path):
    path = tmp_path / "plain.dcm"
    path.write_bytes(b"\0" * 300)  # no 'DICM' marker: pydicom's message advises force=True
    with pytest.raises(CorruptFileError, match="not a valid DICOM file") as error:
        read_header(path)
    assert "force" not in str(error.value) and "\n" not in str(error.value)


# --- files pydicom decodes from a parsed dataset only --------------------------------------------------------------


def test_deflated_file_reads_as_pydicom_decodes_it():
    path = pydicom_file("image_dfl.dcm")  # Deflated Explicit VR Little Endian, 8-bit MONOCHROME2
    expected = _reference(path).pixel_array.astype(np.float32) / np.float32(255)
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, expected)
    assert image.meta.normalization == "stored bit range [0, 255] (BitsStored=8) -> [0,1]"
    assert len(np.unique(image.pixels)) == 24


def test_jpeg_whose_body_is_implicit_vr_reads_as_pydicom_decodes_it():
    path = pydicom_file("SC_rgb_jpeg.dcm")  # JPEG Baseline declared explicit VR, body written implicit VR
    expected = luma(_reference(path).pixel_array) / np.float32(255)
    with pytest.warns(ReadWarning, match="SC_rgb_jpeg.dcm: Expected explicit VR, but found implicit VR"):
        image = read_image(path)
    np.testing.assert_array_equal(image.pixels, expected)
    assert image.pixels.shape == (256, 256) and len(np.unique(image.pixels)) > 5
    assert image.meta.notes == ("Expected explicit VR, but found implicit VR - using implicit VR for reading",)


# --- LUT sequences, applied by pydicom -----------------------------------------------------------------------------


def test_modality_lut_sequence_is_applied():
    path = pydicom_file("mlut_18.dcm")  # 12-bit signed data, Modality LUT of 4096 entries from -2048 to 0..65535
    ds = _reference(path)
    expected = apply_modality_lut(ds.pixel_array, ds).astype(np.float32) / np.float32(65535)
    image = read_image(path)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-7)
    assert image.meta.normalization == (
        "Modality LUT (4096 entries from -2048) -> [0, 65535], its output range [0, 65535] -> [0,1]"
    )
    assert image.meta.notes == ()


def test_voi_lut_sequence_is_applied_when_there_is_no_window():
    path = pydicom_file("vlut_04.dcm")  # 8-bit data, VOI LUT of 256 entries to 0..65535
    ds = _reference(path)
    expected = apply_voi_lut(ds.pixel_array, ds).astype(np.float32) / np.float32(65535)
    image = read_image(path)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-7)
    assert image.meta.normalization == "VOI LUT (256 entries from 0) -> [0, 65535] -> [0,1]"


def _lut_item(first: int, values: list[int], bits: int = 16) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(values), first, bits]
    item.LUTData = values
    item["LUTData"].VR = "US"
    return item


def test_synthetic_luts_give_exact_values(make_dicom):
    def luts(ds: Dataset) -> None:
        # Modality LUT: stored 0..200 -> 2 * stored (a LUT that a rescale would also give), VOI LUT: squares.
        ds.ModalityLUTSequence = Sequence([_lut_item(0, [2 * v for v in range(201)])])
        ds.ModalityLUTSequence[0].ModalityLUTType = "US"
        ds.VOILUTSequence = Sequence([_lut_item(0, [min(v * v, 65535) for v in range(401)])])

    path = make_dicom("luts.dcm", ROW, edit=luts)
    image = read_image(path)
    twice = 2 * ROW
    np.testing.assert_allclose(image.pixels, np.minimum(twice * twice, 65535) / 65535, atol=1e-7)
    bits = read_image(path, normalization="bits")
    np.testing.assert_allclose(bits.pixels, twice / 400, atol=1e-7)  # the Modality LUT's output range 0..400


def test_window_is_kept_over_a_voi_lut_sequence_with_a_note(make_dicom):
    def both(ds: Dataset) -> None:
        ds.VOILUTSequence = Sequence([_lut_item(0, list(range(256)), bits=8)])

    path = make_dicom("both.dcm", ROW, bits_stored=8, window=(100.5, 101), edit=both)
    with pytest.warns(ReadWarning, match="both a VOI LUT Sequence and a VOI window; the window used"):
        image = read_image(path)
    np.testing.assert_allclose(image.pixels, [[0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]], atol=1e-6)


# --- fallbacks: the same values as before, now recorded and warned once ----------------------------------------------


@pytest.mark.parametrize(
    ("values", "garbage", "expected", "note"),
    [
        ({"RescaleSlope": "0", "RescaleIntercept": "0"}, {}, ROW / 4095,
         "RescaleSlope '0' (top-level) is zero or not a number; slope 1 used"),
        ({"RescaleSlope": "777", "RescaleIntercept": "0"}, {b"777 ": b"abc "}, ROW / 4095,
         "RescaleSlope 'abc' (top-level) is zero or not a number; slope 1 used"),
        ({"WindowCenter": "777", "WindowWidth": "101"}, {b"777 ": b"abc "}, ROW / 4095,
         "WindowCenter 'abc' (top-level) is not a number; no VOI window used"),
        ({"WindowCenter": "100.5", "WindowWidth": "101", "VOILUTFunction": "GAMMA"}, {},
         np.array([[0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]]),
         "VOILUTFunction 'GAMMA' (top-level) is not one of LINEAR, LINEAR_EXACT, SIGMOID; LINEAR used"),
        ({"WindowCenter": "100", "WindowWidth": "0.5"}, {}, ROW / 4095,
         "WindowWidth 0.5 (top-level) is not valid for LINEAR (needs >= 1); no VOI window used"),
    ],
    ids=["zero-slope", "malformed-slope", "garbage-center", "unknown-function", "too-narrow"],
)
def test_fallbacks_are_recorded_and_warned_once(make_dicom, values, garbage, expected, note):
    def add_values(ds: Dataset) -> None:
        for keyword, value in values.items():
            ds.add_new(keyword, "CS" if keyword == "VOILUTFunction" else "DS", value)

    path = make_dicom("fallback.dcm", ROW, edit=add_values)
    data = path.read_bytes()
    for placeholder, value in garbage.items():  # pydicom writes valid numbers only: the garbage goes in after
        assert data.count(placeholder) == 1
        data = data.replace(placeholder, value)
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        header = read_header(path)
        image = read_image(path)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert note in header.notes and note in image.meta.notes
    ours = [str(item.message) for item in caught if item.category is ReadWarning]
    assert len(ours) == 1 and ours[0].startswith(f"{path}: ") and note in ours[0]  # once for the header and image
    assert all("\n" not in message for message in ours)
    assert not [item for item in caught if item.category is not ReadWarning]  # pydicom's own are in the notes


def test_ordinary_files_have_no_notes(make_dicom):
    path = make_dicom("plain.dcm", ROW, window=(100.5, 101), rescale=(0.5, -100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all
        image = read_image(path)
        assert read_header(path).notes == ()
    assert image.meta.notes == ()
