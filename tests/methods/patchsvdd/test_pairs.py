"""The training pairs: the relative-position labels name where the neighbour lies, SVDD' pairs are a few pixels
apart, patches hold tissue, and the sequence resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest

from picard_ad.data.patches import list_training_images
from picard_ad.io.writers import write_png
from picard_ad.methods.patchsvdd.pairs import POSITION_OFFSETS, PairSampler

SIDE = 128  # the image, one 2K region for K = 64
CODE_OFFSET = 2000  # 16-bit codes of the coordinate image start here: above the tissue threshold


@pytest.fixture(scope="module")
def coordinate_image(tmp_path_factory):
    """A 128 x 128 16-bit PNG whose every pixel's code is CODE_OFFSET + row * 128 + col."""
    path = tmp_path_factory.mktemp("pairs") / "coordinates.png"
    codes = CODE_OFFSET + np.arange(SIDE * SIDE).reshape(SIDE, SIDE)
    write_png(path, codes / 65535.0, bit_depth=16)
    return list_training_images(path)


def _origins(patches: np.ndarray) -> np.ndarray:
    """(N, 2) image coordinates of the top-left pixel of each patch cut from the coordinate image."""
    codes = np.rint(patches[:, 0, 0].astype(np.float64) * 65535).astype(int) - CODE_OFFSET
    return np.stack(np.divmod(codes, SIDE), axis=1)


def _sampler(images, noise_std: float = 0.0, seed: int = 3) -> PairSampler:
    return PairSampler(images, 64, seed=seed, stream=0, tissue_threshold=0.02, min_tissue_fraction=0.5,
                       noise_std=noise_std, pool_size=2, patches_per_visit=4)  # fmt: skip


@pytest.mark.parametrize("side", [64, 32])
def test_position_labels_name_the_direction_of_the_neighbour(coordinate_image, side):
    pairs = _sampler(coordinate_image).position_pairs(200, side)
    offsets = _origins(pairs.second) - _origins(pairs.first)
    assert np.array_equal(offsets, pairs.offsets)
    assert np.array_equal(np.sign(offsets), np.asarray(POSITION_OFFSETS)[pairs.labels])
    moved = offsets[offsets != 0]
    assert np.all(np.abs(moved) >= 3 * side // 4) and np.all(np.abs(moved) < side)  # 3s/4 .. s-1 px along an axis
    assert set(pairs.labels.tolist()) == set(range(8))
    assert pairs.first.shape == pairs.second.shape == (200, side, side)


def test_svdd_pairs_are_a_few_pixels_apart(coordinate_image):
    for side, jitter in ((64, 2), (32, 1)):
        pairs = _sampler(coordinate_image).svdd_pairs(100, side)
        offsets = _origins(pairs.second) - _origins(pairs.first)
        assert np.array_equal(offsets, pairs.offsets) and pairs.labels is None
        assert np.abs(offsets).max() == jitter and np.all(np.abs(offsets).max(axis=1) >= 1)


def test_position_patches_are_shifted_and_noised_svdd_patches_are_not(coordinate_image):
    clean, noisy = (
        _sampler(coordinate_image).position_pairs(50, 32),
        _sampler(coordinate_image, 0.02).position_pairs(50, 32),
    )
    residual = noisy.first - clean.first  # the same draw of positions: the noise takes its own numbers after them
    assert 0.015 < residual.std() < 0.03
    assert np.array_equal(_sampler(coordinate_image, 0.02).svdd_pairs(5, 32).first,
                          _sampler(coordinate_image).svdd_pairs(5, 32).first)  # fmt: skip


def test_every_patch_holds_tissue_and_the_sequence_resumes_exactly(tmp_path):
    image = np.zeros((160, 160))
    image[20:140, 10:110] = 0.4  # tissue on part of the image only
    write_png(tmp_path / "partial.png", image)
    images = list_training_images(tmp_path / "partial.png")
    sampler = _sampler(images)
    sampler.position_pairs(20, 64)
    state = sampler.state_dict()
    ahead = [sampler.position_pairs(20, 64), sampler.svdd_pairs(20, 32)]
    resumed = _sampler(images)
    resumed.load_state_dict(state)
    again = [resumed.position_pairs(20, 64), resumed.svdd_pairs(20, 32)]
    for first, second in zip(ahead, again):
        assert np.array_equal(first.first, second.first) and np.array_equal(first.second, second.second)
        for patches in (first.first, first.second):
            assert ((patches > 0.02).mean(axis=(1, 2)) >= 0.5).all()
