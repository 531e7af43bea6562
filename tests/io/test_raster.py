"""PNG, JPEG and TIFF readers: bit depths, colour to grey, multi-page TIFF, dispatch, folder listing, errors."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from picard_ad.errors import (
    CorruptFileError,
    InputError,
    MissingDependencyError,
    UnsupportedFormatError,
)
from picard_ad.io import (
    SUPPORTED_SUFFIXES,
    find_images,
    iter_slices,
    read_header,
    read_image,
    read_mask,
)


def _raw_png(path, array: np.ndarray, colour_type: int) -> None:
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit colour)."""
    rows = [b"\x00" + row.astype(">u2").tobytes() for row in array]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", array.shape[1], array.shape[0], 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
                     + chunk(b"IEND", b""))


def test_8_bit_png(tmp_path):
    grey = np.array([[0, 51, 255], [1, 128, 254]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    np.testing.assert_allclose(image.pixels, grey / 255, atol=1e-7)
    assert image.meta.normalization == "uint8 grey range [0, 255] -> [0,1]"
    assert read_header(tmp_path / "g.png").normalization == image.meta.normalization
    assert (image.meta.format, image.meta.stored_dtype, image.meta.n_slices) == ("png", "uint8", 1)


def test_16_bit_png_keeps_its_depth(tmp_path):
    grey = np.array([[0, 1000, 65535], [256, 30000, 40000]], dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    image = read_image(tmp_path / "g16.png")
    np.testing.assert_allclose(image.pixels, grey / 65535, atol=1e-7)  # 1000 -> 0.0153, not clipped to 8 bits
    header = read_header(tmp_path / "g16.png")
    assert (header.stored_dtype, header.bits_stored) == ("uint16", 16)
    assert header.normalization == "uint16 grey range [0, 65535] -> [0,1]"


def test_16_bit_colour_png_is_refused_not_reduced(tmp_path):
    path = tmp_path / "rgb16.png"
    _raw_png(path, np.full((4, 6 * 3), 40000, dtype=np.uint16), colour_type=2)
    with pytest.raises(UnsupportedFormatError, match="16-bit colour") as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_rgb_and_rgba_use_bt601_luma(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    expected = [[0.299, 0.587, 0.114, (0.299 * 10 + 0.587 * 20 + 0.114 * 30) / 255]]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    image = read_image(tmp_path / "rgb.png")
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.meta.normalization == "uint8 luma of RGB range [0, 255] -> [0,1]"
    rgba = np.concatenate([rgb, np.full((1, 4, 1), 7, dtype=np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png").pixels, expected, atol=1e-6)


def test_jpeg_grey_and_colour(tmp_path):
    grey = (np.add.outer(np.arange(40), np.arange(48)) * 2).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.jpg", quality=100)
    image = read_image(tmp_path / "g.jpg")
    assert image.meta.format == "jpeg"
    assert np.abs(image.pixels - grey / 255).max() <= 3 / 255  # lossy
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "c.jpeg", quality=100)
    assert np.abs(read_image(tmp_path / "c.jpeg").pixels - grey / 255).max() <= 3 / 255


def test_palette_mask_uses_the_palette_index(tmp_path):
    labels = np.array([[0, 1, 2], [0, 0, 1]], dtype=np.uint8)
    image = Image.fromarray(labels, mode="L").convert("P")
    image.putpalette([0, 0, 0] * 256)  # every label drawn black: only the index tells them apart
    image.save(tmp_path / "labels.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "labels.png"), labels > 0)
    Image.fromarray(labels * 255).save(tmp_path / "mask.png")
    mask = read_mask(tmp_path / "mask.png")
    assert mask.dtype == bool and mask.flags.c_contiguous
    np.testing.assert_array_equal(mask, labels > 0)


def test_tiff_8_16_bit_and_pages(tmp_path):
    pages = np.array([[[0, 1000]], [[30000, 65535]], [[5, 6]]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="minisblack")
    header = read_header(tmp_path / "stack.tif")
    assert (header.n_slices, header.stored_shape, header.format) == (3, (3, 1, 2), "tiff")
    slices = list(iter_slices(tmp_path / "stack.tif", [1, 0]))
    np.testing.assert_allclose(slices[0].pixels, pages[1] / 65535, atol=1e-7)
    np.testing.assert_allclose(slices[1].pixels, pages[0] / 65535, atol=1e-7)
    assert slices[0].meta.normalization == "16-bit grey range [0, 65535] -> [0,1]"
    tifffile.imwrite(tmp_path / "g8.tiff", np.array([[0, 51, 255]], dtype=np.uint8))
    np.testing.assert_allclose(read_image(tmp_path / "g8.tiff").pixels, [[0, 0.2, 1]], atol=1e-7)


def test_tiff_float_signed_and_min_is_white(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.array([[-2.0, 0.0, 6.0]], dtype=np.float32))
    image = read_image(tmp_path / "f.tif")
    np.testing.assert_allclose(image.pixels, [[0.0, 0.25, 1.0]], atol=1e-7)
    assert image.meta.normalization.startswith("min-max [-2, 6]")
    tifffile.imwrite(tmp_path / "s.tif", np.array([[-32768, 0, 32767]], dtype=np.int16))
    np.testing.assert_allclose(read_image(tmp_path / "s.tif").pixels, [[0.0, 32768 / 65535, 1.0]], atol=1e-7)
    tifffile.imwrite(tmp_path / "w.tif", np.array([[0, 255]], dtype=np.uint8), photometric="miniswhite")
    image = read_image(tmp_path / "w.tif")
    np.testing.assert_allclose(image.pixels, [[1.0, 0.0]])
    assert image.meta.normalization.endswith("MinIsWhite inverted")


@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_tiff_rgb(tmp_path, planar):
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    data = rgb if planar == "contig" else np.moveaxis(rgb, -1, 0)
    tifffile.imwrite(tmp_path / "rgb.tif", data, photometric="rgb", planarconfig=planar)
    np.testing.assert_allclose(read_image(tmp_path / "rgb.tif").pixels, [[0.299, 0.587, 0.114]], atol=1e-6)


def test_lzw_tiff_names_the_missing_package(tmp_path):
    path = tmp_path / "lzw.tif"
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(path, compression="tiff_lzw")
    with pytest.raises(MissingDependencyError, match="imagecodecs") as error:
        read_image(path)
    assert str(path) in str(error.value)


def test_normalisation_choices(tmp_path):
    values = np.arange(1000, dtype=np.uint16).reshape(20, 50)
    Image.fromarray(values).save(tmp_path / "v.png")
    np.testing.assert_allclose(read_image(tmp_path / "v.png", normalization="minmax").pixels, values / 999, atol=1e-6)
    low, high = 4.995, 994.005
    np.testing.assert_allclose(read_image(tmp_path / "v.png", normalization="percentile").pixels,
                               np.clip((values - low) / (high - low), 0, 1), atol=1e-6)
    with pytest.raises(InputError, match="raster images have none"):
        read_image(tmp_path / "v.png", normalization="window")


def test_magic_bytes_beat_the_suffix(tmp_path):
    grey = np.array([[0, 255]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "really_png.jpg", format="PNG")
    image = read_image(tmp_path / "really_png.jpg")
    assert image.meta.format == "png"
    np.testing.assert_array_equal(image.pixels, [[0.0, 1.0]])


def test_find_images(tmp_path, make_dicom):
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(tmp_path / "b.PNG")
    (tmp_path / "sub").mkdir()
    tifffile.imwrite(tmp_path / "sub" / "a.tif", np.zeros((2, 2), dtype=np.uint8))
    dicom = make_dicom("IM0001", np.zeros((2, 2)))
    (tmp_path / "readme.txt").write_text("text")
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(tmp_path / ".b.png.part.png")
    assert find_images(tmp_path) == [dicom, tmp_path / "b.PNG", tmp_path / "sub" / "a.tif"]
    assert find_images(tmp_path, recursive=False) == [dicom, tmp_path / "b.PNG"]
    with pytest.raises(InputError, match="folder not found"):
        find_images(tmp_path / "absent")


# --- errors: each names the file ---------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found") as error:
        read_image(tmp_path / "absent.png")
    assert str(tmp_path / "absent.png") in str(error.value)


def test_unknown_extension_lists_supported(tmp_path):
    path = tmp_path / "scan.bmp"
    path.write_bytes(b"BM" + b"\x00" * 100)
    with pytest.raises(UnsupportedFormatError, match=r"unknown image type \.bmp; supported: \.dcm") as error:
        read_image(path)
    assert str(path) in str(error.value) and all(suffix in str(error.value) for suffix in SUPPORTED_SUFFIXES)


def test_png_with_garbage_and_truncated_png(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(500))
    with pytest.raises(CorruptFileError) as error:
        read_image(garbage)
    assert str(garbage) in str(error.value)
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "w.png")
    cut = tmp_path / "cut.png"
    cut.write_bytes((tmp_path / "w.png").read_bytes()[:2000])
    with pytest.raises(CorruptFileError, match="damaged or truncated PNG") as error:
        read_image(cut)
    assert str(cut) in str(error.value)


def test_truncated_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "w.tif", np.ones((64, 64), dtype=np.uint16))
    cut = tmp_path / "cut.tif"
    cut.write_bytes((tmp_path / "w.tif").read_bytes()[:3000])
    with pytest.raises(CorruptFileError) as error:
        read_image(cut)
    assert str(cut) in str(error.value)
