import json

import numpy as np
import pytest
from scipy import ndimage

from picard_ad.config import from_dict
from picard_ad.data.synthetic import (
    ANOMALY_KINDS,
    SyntheticAnomalyConfig,
    insert_anomaly,
    make_synthetic_set,
)
from picard_ad.errors import ConfigError


def _textured(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Smooth random texture scaled to [0.2, 0.8]."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 1.0)
    return 0.2 + 0.6 * (noise - noise.min()) / (noise.max() - noise.min())


def _ball(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    offsets = grid - np.asarray(centre, dtype=float).reshape((-1,) + (1,) * len(shape))
    return np.sqrt((offsets**2).sum(0)) <= radius


@pytest.fixture(scope="module")
def scene():
    """A 96 x 96 float32 image: textured disc of tissue (radius 40) on a 0 background, and a source image."""
    tissue = _ball((96, 96), (48, 48), 40)
    image = np.where(tissue, _textured((96, 96), 0), 0.0).astype(np.float32)
    source = np.where(tissue, _textured((96, 96), 1), 0.0).astype(np.float32)
    return image, tissue, source


def _insert(scene, kind, seed, **kwargs):
    image, tissue, source = scene
    return insert_anomaly(image, kind, np.random.default_rng(seed), tissue, source_image=source, **kwargs)


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
def test_anomaly_changes_only_masked_pixels_inside_tissue(scene, kind):
    image, tissue, _ = scene
    for seed in range(3):
        out, mask, info = _insert(scene, kind, seed)
        assert out.shape == image.shape and out.dtype == np.float32 and mask.dtype == bool
        assert np.array_equal(out[~mask].view(np.uint32), image[~mask].view(np.uint32))  # bit-identical
        assert mask.sum() >= 20 and not (mask & ~tissue).any()
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
        assert info["kind"] == kind and info["mask_pixels"] == mask.sum()
        assert np.abs(out[mask] - image[mask]).mean() > 0.005
        assert info["changed_fraction"] == pytest.approx(np.mean(out[mask] != image[mask]))
        assert info["changed_fraction"] > 0.9
        assert json.loads(json.dumps(info)) == info


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
def test_same_seed_same_anomaly_other_seed_different(scene, kind):
    first, second, other = (_insert(scene, kind, seed) for seed in (7, 7, 8))
    assert np.array_equal(first.image, second.image) and np.array_equal(first.mask, second.mask)
    assert first.info == second.info
    assert not np.array_equal(first.image, other.image)


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
def test_volumes_keep_outside_voxels_and_stay_in_tissue(kind):
    tissue = _ball((24, 28, 28), (12, 14, 14), 11)
    volume = np.where(tissue, _textured(tissue.shape, 2), 0.0)
    source = _textured((20, 20, 20), 3)
    out, mask, info = insert_anomaly(volume, kind, np.random.default_rng(4), tissue, source_image=source)
    assert out.dtype == np.float64 and mask.shape == volume.shape
    assert np.array_equal(out[~mask], volume[~mask])
    assert mask.any() and not (mask & ~tissue).any()
    assert np.abs(out[mask] - volume[mask]).mean() > 0.002
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_sphere_in_a_volume_has_an_exact_sphere_mask_and_a_flat_core():
    volume = _textured((32, 32, 32), 5)
    config = SyntheticAnomalyConfig(radius_fraction=(0.2, 0.25), edge_px=2.0)
    out, mask, info = insert_anomaly(volume, "disc", np.random.default_rng(6), config=config)
    centre, radius = info["centre"], info["semi_axes_px"][0]
    assert info["semi_axes_px"] == [radius] * 3 and 6.4 <= radius <= 8.0
    mask_radius = info["mask_radius_px"]
    # The raised-cosine rim, 2 px wide, stays at >= 1 % of the full weight over 93.6 % of its width.
    assert mask_radius == pytest.approx(radius - 2.0 + 2.0 * np.arccos(-0.98) / np.pi)
    # Exactly the voxels within the mask radius (a 1e-6 shell is left for rounding; no voxel lies in it here).
    assert np.array_equal(mask, _ball(volume.shape, centre, mask_radius - 1e-6))
    assert np.array_equal(mask, _ball(volume.shape, centre, mask_radius + 1e-6))
    core = _ball(volume.shape, centre, radius - 2.0)
    assert np.all(out[core] == info["intensity"])
    assert abs(info["intensity"] - volume[mask].mean()) >= 0.15 - 1e-9
    assert np.all(np.abs(out[mask] - volume[mask]) > 0)


def test_disc_intensity_keeps_away_from_the_region_mean(scene):
    image = scene[0]
    for seed in range(10):
        out, mask, info = _insert(scene, "disc", seed)
        assert abs(info["intensity"] - image[mask].mean()) >= 0.15 - 1e-6
        assert info["semi_axes_px"][0] == info["semi_axes_px"][1]


def test_shuffle_permutes_the_masked_values(scene):
    image = scene[0]
    out, mask, _ = _insert(scene, "shuffle", 0)
    assert np.array_equal(np.sort(out[mask]), np.sort(image[mask]))
    assert not np.array_equal(out[mask], image[mask])


def test_paste_copies_the_source_in_its_core(scene):
    image, _, source = scene
    config = SyntheticAnomalyConfig(radius_fraction=(0.1, 0.12), aspect=(0.8, 1.0))
    out, mask, info = _insert(scene, "paste", 3, config=config)
    shift = np.subtract(info["source_centre"], info["centre"])
    rows, cols = np.nonzero(mask)
    copied = source[rows + shift[0], cols + shift[1]]
    # Where the blending weight is 1, the pasted pixels are the source's exactly.
    core = _ball(image.shape, info["centre"], info["semi_axes_px"][1] - 2.0)[rows, cols]
    assert core.sum() > 10 and np.array_equal(out[rows, cols][core], copied[core])


def test_blur_smooths_and_contrast_scales_the_region(scene):
    image = scene[0]
    out, mask, info = _insert(scene, "blur", 1)
    assert out[mask].std() < 0.8 * image[mask].std()
    out, mask, info = _insert(scene, "contrast", 2)
    spread_ratio = np.abs(out[mask] - info["region_mean"]).mean() / np.abs(image[mask] - info["region_mean"]).mean()
    assert (spread_ratio > 1.3) if info["factor"] > 1 else (spread_ratio < 0.8)


def test_paste_without_a_source_and_unknown_kind_are_rejected(scene):
    image, tissue, _ = scene
    with pytest.raises(ValueError, match="source_image"):
        insert_anomaly(image, "paste", np.random.default_rng(0), tissue)
    with pytest.raises(ValueError, match="disc, contrast, shuffle, blur, deformation, paste"):
        insert_anomaly(image, "gorilla", np.random.default_rng(0), tissue)


def test_tissue_too_small_raises_a_clear_error(scene):
    image = scene[0]
    tiny = _ball(image.shape, (48, 48), 2.5)
    with pytest.raises(ValueError, match="tissue too small"):
        insert_anomaly(image, "disc", np.random.default_rng(0), tiny)


def test_bad_inputs_are_rejected(scene):
    image, tissue, _ = scene
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        insert_anomaly(image * 2, "blur", np.random.default_rng(0), tissue)
    with pytest.raises(ValueError, match="shape"):
        insert_anomaly(image, "blur", np.random.default_rng(0), tissue[:50])
    with pytest.raises(ValueError, match="2-D"):
        insert_anomaly(image[0], "blur", np.random.default_rng(0))


def test_config_rejects_impossible_ranges():
    with pytest.raises(ValueError, match="blur_sigma_px"):
        SyntheticAnomalyConfig(blur_sigma_px=(5.0, 2.0))
    with pytest.raises(ConfigError, match="min_intensity_difference"):
        from_dict(SyntheticAnomalyConfig, {"min_intensity_difference": 0.5})
    assert from_dict(SyntheticAnomalyConfig, {"edge_px": 0}).edge_px == 0.0


def test_synthetic_set_cycles_kinds_and_is_reproducible(scene):
    image, tissue, source = scene
    images, masks = [image, source[:, ::-1].copy()], [tissue, tissue[:, ::-1].copy()]
    samples = make_synthetic_set(images, masks, ["disc", "paste", "shuffle"], n=9, seed=11)
    assert [s.info["kind"] for s in samples] == ["disc", "paste", "shuffle"] * 3
    for i, (out, mask, info) in enumerate(samples):
        assert info["index"] == i
        base, base_tissue = images[info["image_index"]], masks[info["image_index"]]
        assert np.array_equal(out[~mask], base[~mask]) and not (mask & ~base_tissue).any()
        if info["kind"] == "paste":
            assert info["source_index"] == 1 - info["image_index"]
    assert len({s.info["image_index"] for s in samples}) == 2
    again = make_synthetic_set(images, masks, ["disc", "paste", "shuffle"], n=9, seed=11)
    assert all(np.array_equal(a.image, b.image) and a.info == b.info for a, b in zip(samples, again))
    # Sample i depends only on (seed, i): a shorter set is a prefix of a longer one.
    prefix = make_synthetic_set(images, masks, ["disc", "paste", "shuffle"], n=4, seed=11)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(prefix, samples))
    other = make_synthetic_set(images, masks, ["disc", "paste", "shuffle"], n=9, seed=12)
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(other, samples))


def test_synthetic_set_reports_the_failing_image_and_bad_kinds(scene):
    image, tissue, _ = scene
    tiny = _ball(image.shape, (48, 48), 2.5)
    with pytest.raises(ValueError, match="image 0: tissue too small"):
        make_synthetic_set([image], [tiny], ["contrast"], n=1, seed=0)
    with pytest.raises(ValueError, match="valid kinds|non-empty list"):
        make_synthetic_set([image], None, ["sphere"], n=1, seed=0)
    random_order = make_synthetic_set([image], None, ANOMALY_KINDS, n=12, seed=0, kind_order="random")
    assert len({s.info["kind"] for s in random_order}) >= 3


def test_discs_near_the_image_border_are_never_cut():
    image = _textured((20, 20), 8)
    config = SyntheticAnomalyConfig(radius_fraction=(0.3, 0.45), edge_px=0.0)
    for seed in range(20):
        _, mask, info = insert_anomaly(image, "disc", np.random.default_rng(seed), config=config)
        # The same disc drawn on a grid padded by 10 px on every side has no pixel beyond the image.
        padded_centre = np.add(info["centre"], 10)
        assert mask.sum() == _ball((40, 40), padded_centre, info["mask_radius_px"]).sum()
