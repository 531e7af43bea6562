import numpy as np
import pydicom
import pytest
from PIL import Image

from picard_ad.io.writers import atomic_path, write_dicom, write_mask_png, write_png


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out" / "result.npy"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_path_replaces_existing_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".txt" and tmp.parent == tmp_path
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o644 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_png_16_and_8_bit_round_trip(tmp_path):
    image = np.linspace(0, 1, 64 * 32).reshape(64, 32)
    write_png(tmp_path / "a.png", image, bit_depth=16)
    stored = np.array(Image.open(tmp_path / "a.png"))
    assert stored.dtype == np.uint16 and stored.max() == 65535 and stored.min() == 0
    np.testing.assert_allclose(stored / 65535, image, atol=1 / 65535)
    write_mask_png(tmp_path / "m.png", image > 0.5)
    mask = np.array(Image.open(tmp_path / "m.png"))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    assert ((mask > 0) == (image > 0.5)).all()


def test_png_refuses_nan(tmp_path):
    with pytest.raises(ValueError, match="finite"):
        write_png(tmp_path / "a.png", np.full((4, 4), np.nan))
    assert not (tmp_path / "a.png").exists()


def test_dicom_single_and_multi_frame(tmp_path):
    volume = np.random.default_rng(0).random((3, 20, 10))
    write_dicom(tmp_path / "v.dcm", volume, bits_stored=12)
    ds = pydicom.dcmread(tmp_path / "v.dcm")
    assert ds.NumberOfFrames == 3 and ds.BitsStored == 12
    np.testing.assert_array_equal(ds.pixel_array, np.round(volume * 4095).astype(np.uint16))
    write_dicom(tmp_path / "s.dcm", volume[0])
    assert pydicom.dcmread(tmp_path / "s.dcm").pixel_array.shape == (20, 10)
