"""What a method is fitted on: image files listed as samples, or samples written as files."""

import numpy as np
import pytest

from picard_ad.data.normal_images import NormalImages
from picard_ad.data.samples import Sample
from picard_ad.errors import InputError
from picard_ad.io.writers import write_dicom, write_png


def test_files_become_one_lazy_sample_per_image_and_volume_slice(tmp_path):
    (tmp_path / "p1").mkdir()
    write_png(tmp_path / "p1" / "a.png", np.full((20, 10), 0.25, np.float32), bit_depth=16)
    write_dicom(tmp_path / "volume.dcm", np.random.default_rng(0).random((3, 16, 12)), bits_stored=12)
    images = NormalImages.of(tmp_path)
    assert len(images) == 2 and [entry.n_slices for entry in images.files(tmp_path / "unused")] == [1, 3]
    samples = images.samples()
    assert [s.name for s in samples] == ["p1/a", "volume_s0000", "volume_s0001", "volume_s0002"]
    assert all(s.is_normal for s in samples) and samples[2].slice_index == 1
    assert samples[0].load_image().shape == (20, 10) and samples[0].load_image()[0, 0] == pytest.approx(0.25, abs=1e-4)
    assert not (tmp_path / "unused").exists()  # listed files are used as they are


def test_samples_in_memory_are_written_once_as_16_bit_pngs(tmp_path):
    image = np.linspace(0, 1, 30 * 20, dtype=np.float32).reshape(30, 20)
    held = NormalImages.of([Sample("case/1", "p", "normal", image), image])
    assert [s.name for s in held.samples()] == ["case/1", "image_0001"]
    entries = held.files(tmp_path / "pngs")
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == ["case__1.png", "image_0001.png"]
    assert [(e.rows, e.cols, e.n_slices) for e in entries] == [(30, 20, 1), (30, 20, 1)]
    again = held.files(tmp_path / "pngs")  # a resumed fit rewrites them identically
    assert [e.path.read_bytes() for e in entries] == [e.path.read_bytes() for e in again]


def test_empty_and_abnormal_sets_are_refused(tmp_path):
    with pytest.raises(InputError, match="at least one normal image"):
        NormalImages.of([])
    abnormal = Sample("x", "p", "abnormal", np.zeros((4, 4), np.float32), lesion_mask=np.ones((4, 4), bool))
    with pytest.raises(InputError, match="normal images only; abnormal: x"):
        NormalImages.of([abnormal])
    with pytest.raises(InputError, match="no images found"):
        NormalImages.of(tmp_path)
