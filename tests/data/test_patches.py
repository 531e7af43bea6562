import json
import logging

import numpy as np
import pytest

from picard_ad.data.patches import (
    PatchSampler,
    data_fingerprint,
    list_training_images,
    upscale_to_patch,
)
from picard_ad.data.phantoms import PhantomConfig, generate_phantom
from picard_ad.errors import InputError
from picard_ad.io.writers import write_dicom, write_png

SMALL_PHANTOM = PhantomConfig(
    size=(192, 160), pixel_spacing_mm=0.5, mass_diameter_mm=(4.0, 8.0), calcification_cluster_mm=(4.0, 6.0)
)


@pytest.fixture(scope="module")
def phantom_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phantoms")
    (folder / "sub").mkdir()
    for index in range(4):
        target = folder / ("sub" if index == 3 else ".") / f"normal_{index}.png"
        write_png(target, generate_phantom(SMALL_PHANTOM, seed=index).image)
    return folder


def _sampler(images, **kwargs):
    settings = {"seed": 3, "min_tissue_fraction": 0.5, "pool_size": 3, "patches_per_visit": 4}
    settings.update(kwargs)
    return PatchSampler(images, 32, **settings)


def test_folder_is_searched_recursively_and_listed_files_resolve_relative_paths(phantom_folder, tmp_path):
    images = list_training_images(phantom_folder)
    assert sorted(e.path.name for e in images) == [f"normal_{i}.png" for i in range(4)]
    assert all((e.n_slices, e.rows, e.cols) == (1, 192, 160) for e in images)
    listing = tmp_path / "train.txt"
    listing.write_text(
        f"# normal images\n{phantom_folder / 'normal_0.png'}\n\n{phantom_folder / 'sub' / 'normal_3.png'}\n"
    )
    assert [e.path.name for e in list_training_images(listing)] == ["normal_0.png", "normal_3.png"]
    assert data_fingerprint(images) == data_fingerprint(list(reversed(images)))
    assert data_fingerprint(images) != data_fingerprint(images[:3])


def test_bad_sources_give_errors_naming_the_problem(phantom_folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images found") as info:
        list_training_images(empty)
    assert str(empty) in str(info.value)
    with pytest.raises(InputError, match="no such folder"):
        list_training_images(tmp_path / "missing")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{phantom_folder / 'normal_0.png'}\nnot_there.png\n")
    with pytest.raises(InputError, match="line 2: not_there.png"):
        list_training_images(listing)


def test_an_unreadable_file_among_good_ones_stops_with_its_name(phantom_folder, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in phantom_folder.glob("*.png"):
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    with pytest.raises(InputError) as info:
        list_training_images(folder)
    assert "broken.png" in str(info.value)


def test_patches_have_the_patch_shape_range_and_enough_tissue(phantom_folder):
    sampler = _sampler(list_training_images(phantom_folder), flips=True)
    patches = sampler.sample(40)
    assert patches.shape == (40, 32, 32) and patches.dtype == np.float32
    assert patches.min() >= 0.0 and patches.max() <= 1.0
    tissue = (patches >= 0.005).mean(axis=(1, 2))
    assert tissue.min() >= 0.5
    assert len({p.tobytes() for p in patches}) == 40


def test_all_background_folder_is_refused_clearly(tmp_path):
    for index in range(3):
        write_png(tmp_path / f"black_{index}.png", np.zeros((64, 64)))
    sampler = _sampler(list_training_images(tmp_path), source=tmp_path)
    with pytest.raises(InputError, match="background") as info:
        sampler.sample(1)
    assert str(tmp_path) in str(info.value) and "black_0.png" in str(info.value)


def test_a_background_image_is_reported_and_left_out(phantom_folder, tmp_path, caplog):
    for path in phantom_folder.glob("*.png"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    write_png(tmp_path / "black.png", np.zeros((64, 64)))
    sampler = _sampler(list_training_images(tmp_path))
    with caplog.at_level(logging.WARNING):
        patches = sampler.sample(40)
    assert [p.name for p in sampler.excluded_images] == ["black.png"]
    assert "black.png" in caplog.text
    assert (patches >= 0.005).mean(axis=(1, 2)).min() >= 0.5


def test_sequence_depends_only_on_seed_and_stream_and_resumes_exactly(phantom_folder):
    images = list_training_images(phantom_folder)
    reference = _sampler(images).sample(60)
    assert np.array_equal(_sampler(images, num_workers=2).sample(60), reference)  # threads change nothing
    assert not np.array_equal(_sampler(images, stream=1).sample(60), reference)
    interrupted = _sampler(images)
    first = interrupted.sample(25)
    state = json.loads(json.dumps(interrupted.state_dict()))
    resumed = _sampler(images)
    resumed.load_state_dict(state)
    assert np.array_equal(np.concatenate([first, resumed.sample(35)]), reference)
    with pytest.raises(ValueError, match="images"):
        _sampler(images[:2]).load_state_dict(state)


def test_volumes_are_sampled_slice_by_slice(tmp_path):
    levels = np.array([0.2, 0.4, 0.6, 0.8])
    write_dicom(tmp_path / "volume.dcm", np.ones((4, 48, 48)) * levels[:, None, None])
    sampler = _sampler(list_training_images(tmp_path), pool_size=1, patches_per_visit=1)
    patches = sampler.sample(40)
    seen = {int(np.argmin(np.abs(levels - p.mean()))) for p in patches}
    assert seen == {0, 1, 2, 3}
    assert all(np.ptp(p) < 1e-3 for p in patches)  # each patch from one slice


def test_small_images_are_upscaled_so_the_short_side_fits_the_patch(tmp_path):
    image = np.linspace(0.1, 0.9, 20 * 24, dtype=np.float32).reshape(20, 24)
    upscaled = upscale_to_patch(image, 32)
    assert upscaled.shape == (32, 38)
    assert upscaled.min() >= 0.1 - 1e-6 and upscaled.max() <= 0.9 + 1e-6
    assert upscale_to_patch(image, 16) is image
    write_png(tmp_path / "small.png", image)
    assert _sampler(list_training_images(tmp_path)).sample(3).shape == (3, 32, 32)
