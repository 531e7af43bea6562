"""DICOM reader: windowing, rescale, polarity, functional groups, compression, one-frame decoding, errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import Decoder, DecodeRunner
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from picard_ad.errors import (
    ConfigError,
    CorruptFileError,
    InputError,
    MissingDependencyError,
    UnsupportedFormatError,
)
from picard_ad.io import find_images, iter_slices, read_header, read_image, read_mask

# Stored values along one row; with window C=100.5 W=101 the DICOM LINEAR formula gives (x - 100) / 100 + 0.5.
ROW = np.array([[0, 50, 75, 100, 125, 150, 200]])
ROW_WINDOWED = np.array([[0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]])


def _volume(n_frames: int = 5, rows: int = 24, cols: int = 20) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 4096, size=(n_frames, rows, cols))


def test_top_level_window_uses_the_dicom_linear_formula(make_dicom):
    path = make_dicom("w.dcm", ROW, window=(100.5, 101))
    image = read_image(path)
    np.testing.assert_allclose(image.pixels, ROW_WINDOWED, atol=1e-6)
    assert image.pixels.dtype == np.float32 and image.pixels.flags.c_contiguous
    assert image.meta.normalization == "VOI window C=100.5 W=101 (top-level) -> [0,1]"
    assert image.meta.format == "dicom" and image.meta.modality == "MG"


def test_window_of_width_one_is_a_threshold(make_dicom):
    path = make_dicom("w1.dcm", ROW, window=(100, 1))
    np.testing.assert_array_equal(read_image(path).pixels, [[0, 0, 0, 1, 1, 1, 1]])  # x > 99.5


def test_rescale_is_applied_before_the_window(make_dicom):
    stored = 2 * (ROW + 100)  # rescaled value = 0.5 * stored - 100 gives back ROW
    path = make_dicom("ct.dcm", stored, rescale=(0.5, -100), window=(100.5, 101))
    image = read_image(path)
    np.testing.assert_allclose(image.pixels, ROW_WINDOWED, atol=1e-6)
    assert image.meta.normalization.startswith("rescale slope=0.5 intercept=-100 (top-level), VOI window")


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("LINEAR_EXACT", [[0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]]),  # (x - 100) / 100 + 0.5 with C=100, W=100
        ("SIGMOID", [[1 / (1 + math.exp(4 * (100 - x) / 100)) for x in ROW[0]]]),
    ],
)
def test_other_voi_functions(make_dicom, function, expected):
    path = make_dicom("f.dcm", ROW, window=(100, 100), voi_function=function)
    image = read_image(path)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert function in image.meta.normalization


def test_monochrome1_is_inverted_so_dense_is_bright(make_dicom):
    path = make_dicom("m1.dcm", np.array([[0, 341, 682, 1023]]), bits_stored=10, photometric="MONOCHROME1")
    image = read_image(path)
    np.testing.assert_allclose(image.pixels, [[1.0, 1 - 341 / 1023, 1 - 682 / 1023, 0.0]], atol=1e-6)
    assert image.meta.normalization == "stored bit range [0, 1023] (BitsStored=10) -> [0,1], MONOCHROME1 inverted"
    assert image.meta.photometric == "MONOCHROME1"


def test_bits_range_follows_rescale_and_sign(make_dicom):
    rescaled = make_dicom("r.dcm", np.array([[0, 2048, 4095]]), rescale=(0.5, 10))
    # Stored range 0..4095 becomes 10..2057.5 after rescale.
    np.testing.assert_allclose(read_image(rescaled).pixels, [[0.0, 1024 / 2047.5, 1.0]], atol=1e-6)
    signed = make_dicom("s.dcm", np.array([[-32768, 0, 32767]]), bits_stored=16, signed=True)
    np.testing.assert_allclose(read_image(signed).pixels, [[0.0, 32768 / 65535, 1.0]], atol=1e-6)
    assert read_header(signed).stored_dtype == "int16"


def test_explicit_normalizations(make_dicom):
    values = np.arange(1000).reshape(20, 50)
    path = make_dicom("n.dcm", values, window=(100.5, 101))
    np.testing.assert_allclose(read_image(path, normalization="bits").pixels, values / 4095, atol=1e-6)
    np.testing.assert_allclose(read_image(path, normalization="minmax").pixels, values / 999, atol=1e-6)
    low, high = 4.995, 994.005  # 0.5th and 99.5th percentiles of 0..999 (linear interpolation)
    expected = np.clip((values - low) / (high - low), 0, 1)
    percentile = read_image(path, normalization="percentile")
    np.testing.assert_allclose(percentile.pixels, expected, atol=1e-6)
    assert percentile.meta.normalization == "percentiles 0.5-99.5 [4.995, 994.005] -> [0,1], clipped"


def test_per_frame_windows_and_rescales_override_top_level(make_dicom):
    frames = np.stack([ROW + 100 * k for k in range(3)])
    path = make_dicom(
        "dbt.dcm",
        frames,
        window=(5000, 10),  # top level, must lose against the functional groups
        frame_windows=[(100.5 + 100 * k, 101) for k in range(3)],
        shared_spacing=(0.085, 0.085),
        pixel_spacing=(0.5, 0.5),
    )
    images = list(iter_slices(path))
    assert [image.meta.slice_index for image in images] == [0, 1, 2]
    for image in images:
        np.testing.assert_allclose(image.pixels, ROW_WINDOWED, atol=1e-6)
        assert "(per-frame functional group)" in image.meta.normalization
        assert image.meta.spacing == (0.085, 0.085)
        assert image.meta.n_slices == 3 and image.meta.stored_shape == (3, 1, 7)
    assert "C=200.5" in images[1].meta.normalization

    rescaled = make_dicom("pfr.dcm", frames, frame_rescales=[(1, 0), (1, -100), (1, -200)], window=(100.5, 101))
    for image in iter_slices(rescaled):
        np.testing.assert_allclose(image.pixels, ROW_WINDOWED, atol=1e-6)


def test_shared_functional_group_window(make_dicom):
    path = make_dicom("shared.dcm", np.stack([ROW, ROW]), shared_window=(100.5, 101))
    image = read_image(path, 1)
    np.testing.assert_allclose(image.pixels, ROW_WINDOWED, atol=1e-6)
    assert image.meta.normalization == "VOI window C=100.5 W=101 (shared functional group) -> [0,1]"
    assert read_header(path).normalization == image.meta.normalization


def test_spacing_sources(make_dicom):
    assert read_header(make_dicom("a.dcm", ROW, pixel_spacing=(0.07, 0.08))).spacing == (0.07, 0.08)
    assert read_header(make_dicom("b.dcm", ROW, imager_spacing=(0.1, 0.1))).spacing == (0.1, 0.1)
    assert read_header(make_dicom("c.dcm", ROW, pixel_spacing=(0, 0))).spacing is None  # as in RG1_UNCR
    assert read_header(make_dicom("d.dcm", ROW)).spacing is None


def test_header_describes_without_decoding(make_dicom, monkeypatch):
    path = make_dicom("h.dcm", _volume(4), window=(2047, 4096), compress=(RLELossless, "pydicom"))
    monkeypatch.setattr(DecodeRunner, "_decode_frame", lambda self, src: pytest.fail("header decoded pixels"))
    header = read_header(path)
    assert (header.n_slices, header.rows, header.cols, header.stored_shape) == (4, 24, 20, (4, 24, 20))
    assert header.transfer_syntax == "RLE Lossless" and header.compressed
    assert (header.stored_dtype, header.bits_stored, header.photometric) == ("uint16", 12, "MONOCHROME2")
    assert header.normalization == "VOI window C=2047 W=4096 (top-level) -> [0,1]"
    assert header.to_dict()["stored_shape"] == [4, 24, 20]


@pytest.mark.parametrize(
    "compress",
    [(RLELossless, "pydicom"), (JPEGLSLossless, "pyjpegls"), (JPEG2000Lossless, "pylibjpeg")],
    ids=["rle", "jpeg-ls", "jpeg2000"],
)
def test_lossless_compression_matches_uncompressed(make_dicom, compress):
    volume = _volume(3, 64, 48)  # JPEG 2000 needs at least 32 pixels per side for its default 6 resolutions
    plain = [image.pixels for image in iter_slices(make_dicom("plain.dcm", volume, window=(2047, 4096)))]
    path = make_dicom("packed.dcm", volume, window=(2047, 4096), compress=compress)
    assert read_header(path).compressed
    for index, image in enumerate(iter_slices(path)):
        np.testing.assert_array_equal(image.pixels, plain[index])


def test_jpeg_baseline_matches_pillow_decoding(make_dicom):
    grey = (np.add.outer(np.arange(32), np.arange(40)) * 3).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="JPEG", quality=95)
    reference = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float64) / 255

    def encapsulate_jpeg(ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"

    path = make_dicom("jpeg.dcm", grey, bits_stored=8, edit=encapsulate_jpeg)
    image = read_image(path)
    assert np.abs(image.pixels - reference).max() <= 2 / 255  # two JPEG decoders may round differently


def test_one_frame_is_decoded_without_the_rest(make_dicom, monkeypatch):
    volume = _volume(6)
    path = make_dicom("rle.dcm", volume, compress=(RLELossless, "pydicom"))
    decoded = []
    original = DecodeRunner._decode_frame

    def counting(self, src):
        decoded.append(1)
        return original(self, src)

    monkeypatch.setattr(DecodeRunner, "_decode_frame", counting)
    image = read_image(path, 4)
    assert len(decoded) == 1
    np.testing.assert_allclose(image.pixels, volume[4] / 4095, atol=1e-6)
    assert [s.meta.slice_index for s in iter_slices(path, [5, 1])] == [5, 1]
    assert len(decoded) == 3


def test_default_index_is_the_central_frame(make_dicom):
    volume = _volume(5)
    image = read_image(make_dicom("v.dcm", volume))
    assert image.meta.slice_index == 2
    np.testing.assert_allclose(image.pixels, volume[2] / 4095, atol=1e-6)


def test_dicom_without_suffix_is_found_and_read(make_dicom, tmp_path):
    path = make_dicom("IM0001", ROW, window=(100.5, 101))
    (tmp_path / "notes.txt").write_text("not an image")
    assert find_images(tmp_path) == [path]
    np.testing.assert_allclose(read_image(path).pixels, ROW_WINDOWED, atol=1e-6)


def test_read_mask_uses_stored_values(make_dicom):
    labels = np.array([[0, 1, 2], [0, 0, 3]])
    mask = read_mask(make_dicom("seg.dcm", labels, bits_stored=8, rescale=(1, -5), window=(1, 1)))
    np.testing.assert_array_equal(mask, labels > 0)


# --- errors: each names the file ---------------------------------------------------------------------------------


def test_window_requested_without_window(make_dicom):
    path = make_dicom("nowin.dcm", ROW)
    with pytest.raises(InputError, match="has none") as error:
        read_image(path, normalization="window")
    assert str(path) in str(error.value)


def test_unknown_normalization_lists_the_valid_ones(make_dicom):
    with pytest.raises(ConfigError, match="auto, window, bits, minmax, percentile"):
        read_image(make_dicom("x.dcm", ROW), normalization="zscore")


def test_frame_index_out_of_range(make_dicom):
    path = make_dicom("v.dcm", _volume(3))
    with pytest.raises(InputError, match=r"slice index 3 out of range: valid 0\.\.2") as error:
        read_image(path, 3)
    assert str(path) in str(error.value)
    with pytest.raises(InputError, match="out of range"):
        iter_slices(path, [0, -1])


def test_truncated_dicom(make_dicom, tmp_path):
    whole = make_dicom("whole.dcm", _volume(2, 64, 64)).read_bytes()
    cut_pixels = tmp_path / "cut_pixels.dcm"
    cut_pixels.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorruptFileError) as error:
        read_image(cut_pixels, 1)
    assert str(cut_pixels) in str(error.value)
    cut_header = tmp_path / "cut_header.dcm"
    cut_header.write_bytes(whole[:200])
    with pytest.raises(CorruptFileError, match=str(cut_header)):
        read_header(cut_header)


def test_garbage_with_dicom_suffix(tmp_path):
    path = tmp_path / "garbage.dcm"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(CorruptFileError, match="not a valid DICOM file") as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_structured_report_has_no_pixel_data(tmp_path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    path = tmp_path / "report.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    with pytest.raises(CorruptFileError, match="Basic Text SR.*has no pixel data") as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_zero_size_image(make_dicom):
    def no_rows(ds: Dataset) -> None:
        ds.Rows = 0

    path = make_dicom("empty.dcm", ROW, edit=no_rows)
    with pytest.raises(CorruptFileError, match="zero size") as error:
        read_header(path)
    assert str(path) in str(error.value)


def test_transfer_syntax_without_decoder(make_dicom):
    def mpeg2(ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video
        ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
        ds["PixelData"].VR = "OB"

    path = make_dicom("video.dcm", ROW, edit=mpeg2)
    with pytest.raises(UnsupportedFormatError, match="MPEG2.*no pixel data decoder") as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_missing_decoder_package_is_named(make_dicom, monkeypatch):
    path = make_dicom("j2k.dcm", _volume(1, 64, 64)[0], compress=(JPEG2000Lossless, "pylibjpeg"))
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(MissingDependencyError, match="pylibjpeg-openjpeg") as error:
        read_image(path)
    assert str(path) in str(error.value)
