import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from picard_ad.config import from_dict
from picard_ad.data.lesions import LESION_KINDS, calcification_patch, mass_patch
from picard_ad.data.phantoms import (
    PhantomConfig,
    generate_phantom,
    write_phantom_dataset,
)
from picard_ad.data.texture import power_law_noise
from picard_ad.errors import ConfigError, InputError
from picard_ad.io.annotations import Box, read_boxes_csv
from picard_ad.report.montage import save_montage

# Half the default resolution at twice the pixel size: the same anatomy in mm, four times faster.
SMALL = PhantomConfig(size=(512, 384), pixel_spacing_mm=0.5)
TINY = PhantomConfig(size=(320, 256), pixel_spacing_mm=0.8)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)


def radial_spectrum_slope(field: np.ndarray, f_low: float, f_high: float) -> float:
    """Least-squares slope of log power against log frequency, averaged in log-spaced radial bins."""
    h, w = field.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2((field - field.mean()) * window)) ** 2
    radius = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]).ravel()
    edges = np.geomspace(f_low, f_high, 13)
    bins = np.digitize(radius, edges)
    freqs = [radius[bins == i].mean() for i in range(1, len(edges))]
    powers = [power.ravel()[bins == i].mean() for i in range(1, len(edges))]
    return float(np.polyfit(np.log(freqs), np.log(powers), 1)[0])


@pytest.fixture(scope="module")
def abnormal_phantoms():
    return [generate_phantom(SMALL, seed, n_lesions=3) for seed in range(6)]


# --- generator ------------------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_phantom():
    a, b = generate_phantom(SMALL, 7, n_lesions=2), generate_phantom(SMALL, 7, n_lesions=2)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.tissue_mask, b.tissue_mask)
    assert a.side == b.side and a.seed == b.seed == 7
    assert [lesion.box for lesion in a.lesions] == [lesion.box for lesion in b.lesions]
    for la, lb in zip(a.lesions, b.lesions, strict=True):
        np.testing.assert_array_equal(la.mask, lb.mask)


def test_different_seeds_give_different_phantoms():
    a, b = generate_phantom(SMALL, 1), generate_phantom(SMALL, 2)
    both = a.tissue_mask & b.tissue_mask
    assert not np.array_equal(a.tissue_mask, b.tissue_mask)
    assert np.abs(a.image[both] - b.image[both]).mean() > 0.05


def test_image_shape_dtype_and_range():
    phantom = generate_phantom(SMALL, 3, n_lesions=2)
    assert phantom.image.shape == phantom.tissue_mask.shape == (512, 384)
    assert phantom.image.dtype == np.float32 and phantom.tissue_mask.dtype == bool
    assert phantom.image.min() >= 0.0 and phantom.image.max() <= 1.0
    tissue = phantom.image[phantom.tissue_mask]
    assert tissue.min() > 0.0  # tissue never merges into the background
    assert 0.1 < tissue.mean() < 0.7 and tissue.std() > 0.05  # textured, neither black nor saturated
    assert 0.3 < phantom.tissue_mask.mean() < 0.9


@pytest.mark.parametrize("side", ["L", "R"])
def test_background_is_exactly_zero_and_breast_lies_on_its_side(side):
    phantom = generate_phantom(dataclasses.replace(SMALL, side=side), 4)
    assert phantom.side == side
    assert np.all(phantom.image[~phantom.tissue_mask] == 0.0)
    chest_wall, far_edge = (0, -1) if side == "L" else (-1, 0)
    assert phantom.tissue_mask[:, chest_wall].mean() > 0.6
    assert not phantom.tissue_mask[:, far_edge].any()
    tissue_columns = np.nonzero(phantom.tissue_mask)[1]
    assert (tissue_columns.mean() < 384 / 2) == (side == "L")


def test_random_side_gives_both_sides():
    sides = {generate_phantom(TINY, seed).side for seed in range(12)}
    assert sides == {"L", "R"}


def test_lesions_lie_inside_tissue_apart_from_the_skin(abnormal_phantoms):
    skin_margin_px = SMALL.mm_to_px(SMALL.skin_thickness_mm)
    for phantom in abnormal_phantoms:
        depth = ndimage.distance_transform_edt(phantom.tissue_mask)
        assert len(phantom.lesions) == 3
        for lesion in phantom.lesions:
            assert lesion.mask.any()
            assert np.all(phantom.tissue_mask[lesion.mask])
            assert depth[lesion.mask].min() > skin_margin_px


def test_lesion_masks_do_not_overlap(abnormal_phantoms):
    for phantom in abnormal_phantoms:
        stacked = np.sum([lesion.mask for lesion in phantom.lesions], axis=0)
        assert stacked.max() == 1
        assert phantom.lesion_mask.sum() == sum(int(lesion.mask.sum()) for lesion in phantom.lesions)


def test_lesion_box_is_exactly_the_mask_bounding_box(abnormal_phantoms):
    for phantom in abnormal_phantoms:
        for lesion in phantom.lesions:
            x, y, width, height = bounding_box(lesion.mask)
            assert lesion.box == Box(x=x, y=y, width=width, height=height, label=lesion.kind)
            inside_box = lesion.box.to_mask(lesion.mask.shape)
            assert not np.any(lesion.mask & ~inside_box)


def test_lesions_add_positive_contrast_to_the_same_anatomy():
    # Without noise, a phantom with lesions is its lesion-free twin plus the lesion signals.
    quiet = dataclasses.replace(SMALL, noise_std=0.0)
    for seed in range(3):
        normal, abnormal = generate_phantom(quiet, seed), generate_phantom(quiet, seed, n_lesions=2)
        difference = abnormal.image - normal.image
        assert difference.min() > -1e-6
        near_lesions = ndimage.binary_dilation(abnormal.lesion_mask, iterations=60)
        assert np.all(difference[~near_lesions] == 0.0)
        for lesion in abnormal.lesions:
            assert difference[lesion.mask].max() >= 0.5 * lesion.contrast
            if lesion.kind != "calcification":  # a speck's mask is mostly its one-pixel dilation
                assert difference[lesion.mask].mean() > 0.3 * lesion.contrast


def test_lesion_pixels_are_brighter_than_their_surrounding_ring(abnormal_phantoms):
    margins = []
    for phantom in abnormal_phantoms:
        for lesion in phantom.lesions:
            outer = ndimage.binary_dilation(lesion.mask, iterations=max(3, int(lesion.diameter_px / 4)))
            ring = outer & ~ndimage.binary_dilation(lesion.mask, iterations=2) & phantom.tissue_mask
            margins.append(phantom.image[lesion.mask].mean() - phantom.image[ring].mean())
    margins = np.array(margins)
    assert margins.mean() > 0.04
    assert np.mean(margins > 0) >= 0.85  # a lesion in dense tissue can be darker than bright strands beside it


@pytest.mark.parametrize("kind", LESION_KINDS)
def test_each_lesion_kind_can_be_generated(kind):
    phantom = generate_phantom(dataclasses.replace(SMALL, lesion_kinds=(kind,)), 11, n_lesions=2)
    assert [lesion.kind for lesion in phantom.lesions] == [kind, kind]
    for lesion in phantom.lesions:
        assert lesion.box.label == kind
        if kind == "calcification":
            specks = ndimage.label(lesion.mask)[1]
            assert 1 <= specks <= SMALL.calcification_count[1]
            low, high = SMALL.calcification_contrast
        else:
            area_diameter = 2 * np.sqrt(lesion.mask.sum() / np.pi)
            assert 0.7 * lesion.diameter_px < area_diameter < 1.6 * lesion.diameter_px
            low, high = SMALL.mass_contrast
        assert low <= lesion.contrast <= high


def test_mass_shapes_differ_as_named():
    """Round masses are compact; lobulated ones less so; spiculated ones reach far beyond their core."""

    def solidity(mask):
        filled = ndimage.binary_fill_holes(mask).sum()
        rows, cols = np.nonzero(mask)
        return filled / (np.pi * ((np.ptp(rows) + np.ptp(cols) + 2) / 4) ** 2)

    rng = np.random.default_rng(0)
    round_, lobulated, spiculated = (mass_patch(kind, 60.0, 0.2, rng) for kind in ("round", "lobulated", "spiculated"))
    assert solidity(round_.mask) > 0.85
    assert spiculated.reach_px > 2.0 * 30 > 1.5 * 30 > round_.reach_px  # radius 30 px
    assert solidity(lobulated.mask) < solidity(round_.mask)


@pytest.mark.parametrize(("texture", "mottle"), [(0.0, 1.0), (1.0, 1.2), (-1.0, 0.8), (5.0, 1.5), (-5.0, 0.5)])
def test_mass_peak_is_its_contrast_times_the_mottle(monkeypatch, texture, mottle):
    # signal = contrast x edge ramp x (0.75 + 0.25 dome) x clip(1 + 0.2 texture, 0.5, 1.5). With the texture held
    # constant the peak is at the centre, where the dome is 1 and the logistic ramp is 1 - 2.4e-7 (outline radius
    # 27.4 px, edge 1.8 px for this seed): peak = contrast x clipped mottle, to float32 precision. The real texture
    # can put it anywhere in [0.5, 1.5] x contrast, so the texture is fixed here.
    monkeypatch.setattr(
        "picard_ad.data.lesions.power_law_noise", lambda shape, beta, rng, **_: np.full(shape, texture, np.float32)
    )
    patch = mass_patch("round", 60.0, 0.2, np.random.default_rng(0))
    assert patch.signal.max() == patch.signal[patch.centre]
    assert patch.signal.max() == pytest.approx(0.2 * mottle, rel=1e-6)


def test_calcification_cluster_has_the_requested_specks():
    patch = calcification_patch(12, 40.0, (1.0, 3.0), 0.3, np.random.default_rng(5))
    peaks = (patch.signal == ndimage.maximum_filter(patch.signal, size=3)) & (patch.signal > 0.1)
    assert 8 <= peaks.sum() <= 12  # specks may land on one another
    assert patch.signal.max() <= 0.3 + 1e-6
    assert patch.reach_px <= 20 + 3 * 3 + 3


@pytest.mark.parametrize("beta", [2.0, 3.0, 3.5])
def test_texture_power_spectrum_falls_as_one_over_f_to_the_beta(beta):
    slopes = [
        radial_spectrum_slope(power_law_noise((512, 512), beta, np.random.default_rng(seed)), 1 / 128, 1 / 4)
        for seed in range(2)
    ]
    assert np.mean(slopes) == pytest.approx(-beta, abs=0.3)
    # With a low-frequency roll-off and elongated structures, the slope holds above the roll-off.
    field = power_law_noise((512, 512), beta, np.random.default_rng(9), largest_scale_px=64, elongation=1.6)
    assert radial_spectrum_slope(field, 1 / 32, 1 / 4) == pytest.approx(-beta, abs=0.3)
    assert field.dtype == np.float32 and abs(field.mean()) < 1e-4 and field.std() == pytest.approx(1.0, abs=1e-3)


def test_phantom_texture_has_a_mammographic_spectrum():
    phantom = generate_phantom(dataclasses.replace(PhantomConfig(side="L"), noise_std=0.0), 2)
    rows = np.nonzero(phantom.tissue_mask[:, 300])[0]
    centre = int(rows.mean())
    crop = phantom.image[centre - 128 : centre + 128, 40:296]
    assert phantom.tissue_mask[centre - 128 : centre + 128, 40:296].all()
    # Measured beta of mammograms is 2.5-3.5 (Burgess 2001); strands and lobules may flatten it a little.
    assert -3.6 < radial_spectrum_slope(crop, 1 / 128, 1 / 8) < -2.0


@pytest.mark.parametrize("seed", [0, 1])
def test_default_size_holds_the_most_lesions(seed):
    # The default config (the datasets' default) must fit lesions_per_image's maximum of three lesions, each
    # kept the skin plus 3 mm (16 px at 0.25 mm) inside the breast.
    config = PhantomConfig()
    phantom = generate_phantom(config, seed, n_lesions=config.lesions_per_image[1])
    assert phantom.image.shape == phantom.tissue_mask.shape == (1024, 768) and phantom.image.dtype == np.float32
    assert np.all(phantom.image[~phantom.tissue_mask] == 0.0)
    assert len(phantom.lesions) == 3
    depth = ndimage.distance_transform_edt(phantom.tissue_mask)
    for lesion in phantom.lesions:
        assert lesion.mask.any() and depth[lesion.mask].min() > config.mm_to_px(config.skin_thickness_mm + 3.0)


@pytest.mark.slow
def test_full_dbt_size_works():
    config = PhantomConfig(size=(2457, 1996), pixel_spacing_mm=0.1, side="R")
    phantom = generate_phantom(config, 5, n_lesions=3)
    assert phantom.image.shape == (2457, 1996) and phantom.image.dtype == np.float32
    assert np.all(phantom.image[~phantom.tissue_mask] == 0.0)
    assert len(phantom.lesions) == 3 and phantom.lesion_mask.any()
    assert phantom.tissue_mask[:, -1].mean() > 0.6


def test_plain_anatomy_without_optional_structures():
    bare = dataclasses.replace(
        TINY, n_vessels=0, fibres_per_cm2=0.0, texture_std=0.0, noise_std=0.0, skin_contrast=0.0, breast_density=(0, 0)
    )
    phantom = generate_phantom(bare, 2, n_lesions=1)
    normal = generate_phantom(bare, 2)
    # Fat only (the soft clamp adds under 0.03 at zero density), dimmed towards the skin by the thickness fall-off.
    assert bare.fat_intensity <= normal.image.max() < bare.fat_intensity + 0.03
    assert normal.image[normal.tissue_mask].min() < 0.6 * normal.image.max()
    assert phantom.image[phantom.lesion_mask].max() > normal.image.max() + 0.5 * phantom.lesions[0].contrast


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="seed"):
        generate_phantom(TINY, -1)
    with pytest.raises(ValueError, match="n_lesions"):
        generate_phantom(TINY, 0, n_lesions=-2)
    with pytest.raises(ValueError, match="no room"):
        generate_phantom(TINY, 0, n_lesions=200)


# --- config ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"size": (100, 768)}, "size"),
        ({"pixel_spacing_mm": 0.0}, "pixel_spacing_mm"),
        ({"texture_beta": 7.0}, "texture_beta"),
        ({"side": "top"}, "side"),
        ({"fat_intensity": 0.7, "dense_intensity": 0.5}, "fat_intensity"),
        ({"mass_contrast": (0.3, 0.1)}, "mass_contrast"),
        ({"mass_contrast": (0.1, 1.5)}, "mass_contrast"),
        ({"lesions_per_image": (0, 2)}, "lesions_per_image"),
        ({"lesion_kinds": ()}, "lesion_kinds"),
        ({"lesion_kinds": ("cyst",)}, "cyst"),
        ({"n_vessels": -1}, "n_vessels"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"calcification_count": (5,)}, "calcification_count"),
        ({"mass_diameter_mm": (0.5, 20.0)}, "under 4 pixels"),
        ({"mass_diameter_mm": (10.0, 90.0)}, "do not fit"),
    ],
)
def test_invalid_config_values_raise(changes, message):
    with pytest.raises(ValueError, match=message):
        PhantomConfig(**changes)


def test_config_loads_from_yaml_style_mappings():
    config = from_dict(PhantomConfig, {"size": [512, 384], "pixel_spacing_mm": 0.5, "lesion_kinds": ["round"]})
    assert config.size == (512, 384) and config.lesion_kinds == ("round",)
    hash(config)
    assert PhantomConfig(mass_contrast=[0.1, 0.2]).mass_contrast == (0.1, 0.2)
    with pytest.raises(ConfigError, match="texture_beta"):
        from_dict(PhantomConfig, {"texture_beta": 9.0})
    with pytest.raises(ConfigError, match="did you mean 'texture_beta'"):
        from_dict(PhantomConfig, {"texture_bta": 3.0})


# --- dataset writer -------------------------------------------------------------------------------------------


def test_dataset_writer_produces_consistent_files(tmp_path):
    rows = write_phantom_dataset(tmp_path, n_normal=2, n_abnormal=3, config=SMALL, seed=4)
    names = ["normal_0000", "normal_0001", "abnormal_0000", "abnormal_0001", "abnormal_0002"]
    assert [row["name"] for row in rows] == names
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(f"{n}.png" for n in names)
    assert (tmp_path / "boxes.csv").read_text().splitlines()[0] == "image,x,y,width,height,label"
    boxes = read_boxes_csv(tmp_path / "boxes.csv")
    description = json.loads((tmp_path / "phantoms.json").read_text())
    assert description["complete"] and description["seed"] == 4 and description["config"]["size"] == [512, 384]
    assert sum(len(b) for b in boxes.values()) == sum(row["n_lesions"] for row in rows) >= 3

    for row, entry in zip(rows, description["images"], strict=True):
        pixels = Image.open(row["image"])
        assert pixels.mode.startswith("I;16") or pixels.mode == "I"
        values = np.asarray(pixels)
        mask = np.asarray(Image.open(row["mask"]))
        assert values.shape == mask.shape == (512, 384) and mask.dtype == np.uint8
        phantom = generate_phantom(SMALL, row["seed"], row["n_lesions"])
        np.testing.assert_array_equal(values, np.round(phantom.image.astype(np.float64) * 65535).astype(np.uint16))
        np.testing.assert_array_equal(mask == 255, phantom.lesion_mask)
        assert set(np.unique(mask)) <= {0, 255}
        assert entry["side"] == row["side"] == phantom.side
        file_name = f"{row['name']}.png"
        if row["label"] == "normal":
            assert row["n_lesions"] == 0 and file_name not in boxes and not mask.any()
            continue
        assert len(boxes[file_name]) == row["n_lesions"] == len(entry["lesions"])
        for box in boxes[file_name]:
            # A lesion's box is tight: the mask file reaches all four of its sides.
            region = mask[box.y : box.y + box.height, box.x : box.x + box.width] == 255
            assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()
        expected = {(les.box.x, les.box.y, les.box.width, les.box.height, les.kind) for les in phantom.lesions}
        assert {(b.x, b.y, b.width, b.height, b.label) for b in boxes[file_name]} == expected


def test_dataset_image_k_does_not_depend_on_the_counts(tmp_path):
    small = write_phantom_dataset(tmp_path / "a", n_normal=1, n_abnormal=1, config=TINY, seed=3)
    large = write_phantom_dataset(tmp_path / "b", n_normal=2, n_abnormal=2, config=TINY, seed=3)
    assert small[0]["seed"] == large[0]["seed"] and small[1]["seed"] == large[2]["seed"]
    for name in ("normal_0000", "abnormal_0000"):
        first = np.asarray(Image.open(tmp_path / "a" / "images" / f"{name}.png"))
        second = np.asarray(Image.open(tmp_path / "b" / "images" / f"{name}.png"))
        np.testing.assert_array_equal(first, second)
    assert small[0]["seed"] != small[1]["seed"]


def test_dataset_writer_writes_dicom(tmp_path):
    import pydicom

    rows = write_phantom_dataset(tmp_path, n_normal=1, n_abnormal=1, config=TINY, image_format="dcm")
    dataset = pydicom.dcmread(rows[1]["image"])
    assert dataset.pixel_array.shape == (320, 256)
    assert float(dataset.PixelSpacing[0]) == pytest.approx(0.8)
    assert dataset.pixel_array.max() > 0 and np.asarray(Image.open(rows[1]["mask"])).max() == 255


def test_dataset_writer_refuses_a_folder_with_another_dataset(tmp_path):
    write_phantom_dataset(tmp_path, n_normal=1, n_abnormal=1, config=TINY, seed=0)
    before = (tmp_path / "phantoms.json").read_text()
    image_time = (tmp_path / "images" / "abnormal_0000.png").stat().st_mtime_ns
    again = write_phantom_dataset(tmp_path, n_normal=1, n_abnormal=1, config=TINY, seed=0)  # the same dataset
    assert (tmp_path / "phantoms.json").read_text() == before
    assert (tmp_path / "images" / "abnormal_0000.png").stat().st_mtime_ns == image_time  # left untouched
    assert [row["name"] for row in again] == ["normal_0000", "abnormal_0000"]
    assert again[1]["n_lesions"] == len((tmp_path / "boxes.csv").read_text().splitlines()) - 1
    with pytest.raises(InputError, match="different seed"):
        write_phantom_dataset(tmp_path, n_normal=1, n_abnormal=1, config=TINY, seed=1)
    with pytest.raises(InputError, match="different config"):
        write_phantom_dataset(tmp_path, 1, 1, dataclasses.replace(TINY, texture_beta=2.5), seed=0)
    with pytest.raises(InputError, match="n_normal"):
        write_phantom_dataset(tmp_path, n_normal=2, n_abnormal=1, config=TINY, seed=0)
    assert (tmp_path / "phantoms.json").read_text() == before


def test_dataset_writer_refuses_a_folder_of_other_images(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "scan.png").write_bytes(b"not ours")
    with pytest.raises(InputError, match="no phantoms.json"):
        write_phantom_dataset(tmp_path, n_normal=1, n_abnormal=0, config=TINY)
    assert (tmp_path / "images" / "scan.png").read_bytes() == b"not ours"
    assert not (tmp_path / "phantoms.json").exists()


def test_dataset_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="image_format"):
        write_phantom_dataset(tmp_path, 1, 0, TINY, image_format="jpg")
    with pytest.raises(ValueError, match="at least 1"):
        write_phantom_dataset(tmp_path, 0, 0, TINY)
    with pytest.raises(ValueError, match="n_abnormal"):
        write_phantom_dataset(tmp_path, 1, -1, TINY)


def test_dataset_writer_progress_bar(tmp_path, capsys):
    write_phantom_dataset(tmp_path, n_normal=1, n_abnormal=0, config=TINY, progress=True)
    assert "phantoms" in capsys.readouterr().err


# --- montage ----------------------------------------------------------------------------------------------------


def test_montage_writes_a_grid_with_outlines_and_overlays(tmp_path):
    image = np.tile(np.linspace(0.0, 1.0, 256, dtype=np.float32), (320, 1))
    square = np.zeros(image.shape, dtype=bool)
    square[100:200, 80:180] = True
    path = tmp_path / "montage.png"
    save_montage(
        path,
        [image, image, image[:100]],
        titles=["plain", "outlined", "crop"],
        masks=[None, square, None],
        overlays=[None, None, image[:100] ** 2],
        n_columns=3,
        panel_inches=2.0,
        dpi=50,
    )
    picture = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert picture.shape[1] == 3 * 2 * 50
    red = (picture[..., 0] > 180) & (picture[..., 1] < 80) & (picture[..., 2] < 80)
    assert red[:, 100:200].sum() > 50 and red[:, :100].sum() == 0  # outline only in the middle panel
    coloured = np.abs(picture[..., 0] - picture[..., 2]) > 40
    assert coloured[:, 200:].sum() > 500 and coloured[:, :100].sum() == 0  # overlay only in the last panel
    assert not list(tmp_path.glob(".*part*"))


def test_montage_rejects_mismatched_inputs(tmp_path):
    image = np.zeros((10, 10))
    with pytest.raises(ValueError, match="titles"):
        save_montage(tmp_path / "m.png", [image, image], titles=["one"])
    with pytest.raises(ValueError, match="mask 0"):
        save_montage(tmp_path / "m.png", [image], masks=[np.zeros((5, 5), bool)])
    with pytest.raises(ValueError, match="at least one"):
        save_montage(tmp_path / "m.png", [])
    assert not (tmp_path / "m.png").exists()
