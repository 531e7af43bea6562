"""Per-image pixel metrics, region restriction, aggregation over images and image-level metrics."""

import json

import numpy as np
import pytest
from sklearn import metrics as sk

from picard_ad.metrics.localization import image_level_metrics, pixel_metrics, summarize


def _lesion_mask(shape=(10, 10), rows=slice(4, 6), cols=slice(6, 8)):
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


def _tissue_image():
    """10x10 slice: background (columns 0-4) scores 0; tissue (columns 5-9) holds a 2x2 lesion scoring 0.6
    and 46 normal pixels, half at 0.4 and half at 0.8."""
    mask = _lesion_mask()
    tissue = np.zeros((10, 10), dtype=bool)
    tissue[:, 5:] = True
    heatmap = np.zeros((10, 10))
    normal_tissue = np.flatnonzero(tissue & ~mask)
    heatmap.flat[normal_tissue[:23]] = 0.4
    heatmap.flat[normal_tissue[23:]] = 0.8
    heatmap[mask] = 0.6
    return heatmap, mask, tissue


def test_perfect_inverted_and_constant_heatmaps():
    mask = _lesion_mask()
    perfect = pixel_metrics(mask.astype(np.float32), mask, name="perfect")
    assert (perfect.pixel_auroc, perfect.pixel_ap) == (1.0, 1.0)
    inverted = pixel_metrics(1.0 - mask, mask)
    assert inverted.pixel_auroc == 0.0
    constant = pixel_metrics(np.full(mask.shape, 0.7), mask)
    assert constant.pixel_auroc == 0.5
    assert constant.pixel_ap == pytest.approx(4 / 100)
    assert constant.inside_outside_ratio == pytest.approx(1.0)


def test_values_match_sklearn_and_hand_computed_means():
    rng = np.random.default_rng(0)
    mask = _lesion_mask((32, 32), slice(5, 15), slice(8, 20))
    heatmap = (rng.integers(0, 8, mask.shape) + 3 * mask).astype(np.float32)
    result = pixel_metrics(heatmap, mask, name="slice_07")
    assert result.name == "slice_07"
    assert (result.n_pixels, result.n_positive) == (1024, 120)
    assert result.pixel_auroc == pytest.approx(sk.roc_auc_score(mask.ravel(), heatmap.ravel()), abs=1e-12)
    assert result.pixel_ap == pytest.approx(sk.average_precision_score(mask.ravel(), heatmap.ravel()), abs=1e-12)
    assert result.inside_mean == pytest.approx(heatmap[mask].mean(dtype=np.float64))
    assert result.outside_mean == pytest.approx(heatmap[~mask].mean(dtype=np.float64))
    assert result.inside_outside_ratio == pytest.approx(result.inside_mean / result.outside_mean)


def test_region_restriction_removes_easy_background():
    heatmap, mask, tissue = _tissue_image()
    whole = pixel_metrics(heatmap, mask)
    restricted = pixel_metrics(heatmap, mask, region=tissue)
    # Whole slice: the lesion beats the 50 background pixels and the 23 tissue pixels at 0.4, of 96 negatives.
    assert whole.pixel_auroc == pytest.approx(73 / 96)
    assert whole.outside_mean == pytest.approx((23 * 0.4 + 23 * 0.8) / 96)
    assert whole.inside_outside_ratio == pytest.approx(0.6 / whole.outside_mean)
    # Tissue only: the lesion beats half of the 46 normal tissue pixels.
    assert restricted.pixel_auroc == pytest.approx(0.5)
    assert (restricted.n_pixels, restricted.n_positive) == (50, 4)
    assert restricted.outside_mean == pytest.approx(0.6)
    assert restricted.inside_outside_ratio == pytest.approx(1.0)
    assert restricted.pixel_auroc < whole.pixel_auroc


def test_shape_mismatch_errors_name_the_image():
    with pytest.raises(ValueError, match="'a.png'.*heatmap shape"):
        pixel_metrics(np.zeros((4, 5)), np.zeros((5, 4), dtype=bool), name="a.png")
    with pytest.raises(ValueError, match="region shape"):
        pixel_metrics(np.zeros((4, 4)), np.zeros((4, 4), dtype=bool), region=np.ones((4, 3), dtype=bool))


def test_nan_heatmap_error_names_the_image():
    heatmap = np.zeros((4, 4))
    heatmap[1, 1] = np.nan
    with pytest.raises(ValueError, match="'b.png': heatmap.*1 NaN"):
        pixel_metrics(heatmap, _lesion_mask((4, 4), slice(0, 2), slice(0, 2)), name="b.png")


def test_nan_outside_the_region_is_ignored():
    heatmap, mask, tissue = _tissue_image()
    heatmap[~tissue] = np.nan
    assert pixel_metrics(heatmap, mask, region=tissue).pixel_auroc == pytest.approx(0.5)


def test_image_without_lesion_is_excluded_and_named():
    heatmap, mask, tissue = _tissue_image()
    metrics = [
        pixel_metrics(heatmap, mask, name="whole"),
        pixel_metrics(heatmap, mask, region=tissue, name="tissue"),
        pixel_metrics(heatmap, np.zeros_like(mask), name="normal_slice"),
    ]
    assert np.isnan(metrics[2].pixel_auroc) and np.isnan(metrics[2].pixel_ap)
    summary = summarize(metrics)
    assert (summary.n_images, summary.n_scored, summary.n_ratio) == (3, 2, 2)
    assert summary.mean_pixel_auroc == pytest.approx((73 / 96 + 0.5) / 2)
    assert summary.median_pixel_auroc == pytest.approx((73 / 96 + 0.5) / 2)
    assert summary.std_pixel_auroc == pytest.approx(np.std([73 / 96, 0.5], ddof=1))
    assert summary.mean_pixel_ap == pytest.approx((metrics[0].pixel_ap + metrics[1].pixel_ap) / 2)
    assert summary.mean_ratio == pytest.approx((metrics[0].inside_outside_ratio + 1.0) / 2)
    assert summary.images_without_positive == ("normal_slice",)
    assert any("normal_slice" in note and "left out" in note for note in summary.notes)


def test_median_over_three_images():
    mask = _lesion_mask()
    ramp = np.arange(100.0).reshape(10, 10)
    metrics = [pixel_metrics(ramp * sign, mask, name=str(sign)) for sign in (1, -1)]
    metrics.append(pixel_metrics(mask.astype(float), mask, name="perfect"))
    summary = summarize(metrics)
    aurocs = sorted(item.pixel_auroc for item in metrics)
    assert summary.median_pixel_auroc == pytest.approx(aurocs[1])
    assert summary.mean_pixel_auroc == pytest.approx(np.mean(aurocs))
    # The negated ramp and the binary heatmap have no positive mean outside the lesion, so only one ratio.
    assert summary.n_ratio == 1
    assert summary.mean_ratio == pytest.approx(metrics[0].inside_mean / metrics[0].outside_mean)
    assert len(summary.notes) == 1 and "-1, perfect" in summary.notes[0]


def test_image_without_background_and_empty_summary():
    full = pixel_metrics(np.ones((3, 3)), np.ones((3, 3), dtype=bool), name="all_lesion")
    summary = summarize([full])
    assert summary.n_scored == 0 and np.isnan(summary.mean_pixel_auroc)
    assert summary.images_without_negative == ("all_lesion",)
    assert summarize([]).n_images == 0
    assert summarize([]).notes


def test_everything_is_strict_json():
    heatmap, mask, tissue = _tissue_image()
    metrics = [pixel_metrics(heatmap, mask, name="x"), pixel_metrics(heatmap, np.zeros_like(mask), name="y")]
    text = json.dumps([item.to_dict() for item in metrics] + [summarize(metrics).to_dict()], allow_nan=False)
    decoded = json.loads(text)
    assert decoded[1]["pixel_auroc"] is None
    assert decoded[2]["images_without_positive"] == ["y"]


def test_image_level_metrics():
    result = image_level_metrics([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert result == {"image_auroc": 0.75, "image_ap": pytest.approx(5 / 6), "n_normal": 2, "n_abnormal": 2}
    undefined = image_level_metrics([0.1, 0.2], [False, False])
    assert undefined["image_auroc"] is None and undefined["n_normal"] == 2
    json.dumps(undefined, allow_nan=False)
    with pytest.raises(ValueError, match="equal length"):
        image_level_metrics([0.1, 0.2, 0.3], [0, 1])
