"""``evaluate_images`` on hand-made arrays: pooled pixel AUROC/AP exactly, their subsampling above the limit,
image scores given by the caller, the pooled tissue pixels, and the splits it refuses."""

import numpy as np
import pytest

from picard_ad.errors import ConfigError
from picard_ad.evaluation import ArrayImages, EvaluationConfig, evaluate_images, write_evaluation
from picard_ad.metrics import average_precision, roc_auc

# Two 2 x 3 images. Lesion pixels score 0.9, 0.8 (first image) and 0.6 (second); the 9 others score below both
# 0.9 and 0.8, and all but 0.7 below 0.6: pooled AUROC = (9 + 9 + 8) / 27. Ranked: 0.9 P, 0.8 P, 0.7 N, 0.6 P,
# so pooled AP = (1/1 + 2/2 + 3/4) / 3. Per image the AUROCs are 4/4 and 4/5, whose mean 0.9 is another number.
HEATMAPS = [np.array([[0.9, 0.1, 0.4], [0.2, 0.8, 0.3]]), np.array([[0.5, 0.6, 0.05], [0.7, 0.15, 0.35]])]
LESIONS = [np.array([[1, 0, 0], [0, 1, 0]], dtype=bool), np.array([[0, 1, 0], [0, 0, 0]], dtype=bool)]
# Out of tissue: 0.4 and 0.3 of the first image, 0.7 of the second; in tissue every lesion pixel ranks first.
TISSUES = [np.array([[1, 1, 0], [1, 1, 0]], dtype=bool), np.array([[1, 1, 1], [0, 1, 1]], dtype=bool)]


def _images(names=("i1", "i2"), heatmaps=HEATMAPS, lesions=LESIONS, tissues=TISSUES, **kwargs):
    return ArrayImages(list(names), list(heatmaps), list(lesions), list(tissues), **kwargs)


def test_pooled_pixel_auroc_and_ap_rank_the_pixels_of_all_images_together():
    evaluation = evaluate_images(_images(), EvaluationConfig(), keep_pooled_tissue=True)
    m = evaluation.metrics
    assert m["pixel_auroc_pooled"] == pytest.approx(26 / 27, abs=1e-15)
    assert m["pixel_ap_pooled"] == pytest.approx(11 / 12, abs=1e-15)
    labels = np.concatenate([lesion.ravel() for lesion in LESIONS])
    scores = np.concatenate([heatmap.ravel() for heatmap in HEATMAPS])
    assert m["pixel_auroc_pooled"] == roc_auc(labels, scores)
    assert m["pixel_ap_pooled"] == average_precision(labels, scores)
    assert m["pixel_auroc_mean"] == pytest.approx(0.9, abs=1e-15)
    assert (m["tissue_pixel_auroc_pooled"], m["tissue_pixel_ap_pooled"]) == (1.0, 1.0)
    assert m["pooled_stride"] == 1 and not any("pooled" in note for note in m["notes"])
    pooled = evaluation.pooled_tissue
    in_tissue = np.concatenate([tissue.ravel() for tissue in TISSUES])
    np.testing.assert_array_equal(pooled.labels, labels[in_tissue])
    np.testing.assert_array_equal(pooled.scores, scores[in_tissue])
    assert pooled.stride == 1


def test_above_the_limit_every_kth_pixel_of_each_image_is_pooled_and_k_is_reported(tmp_path):
    evaluation = evaluate_images(_images(), EvaluationConfig(pooled_max_pixels=6), keep_pooled_tissue=True)
    m = evaluation.metrics
    # 12 pixels over a limit of 6: pixels 0, 2 and 4 of each image in raster order. That drops the 0.7 that
    # outranked the lesion pixel 0.6, and the 0.6 itself: 0.9 and 0.8 rank above all four negatives left.
    kept = (slice(None, None, 2),)
    labels = np.concatenate([lesion.ravel()[kept] for lesion in LESIONS])
    scores = np.concatenate([heatmap.ravel()[kept] for heatmap in HEATMAPS])
    assert m["pooled_stride"] == 2
    assert m["pixel_auroc_pooled"] == roc_auc(labels, scores) == 1.0
    assert m["pixel_ap_pooled"] == average_precision(labels, scores)
    assert "pooled pixel AUROC/AP took 1 pixel in 2 of each image, in raster order (12 pixels in all, above " \
           "pooled_max_pixels = 6)" in m["notes"]
    in_tissue = np.concatenate([tissue.ravel()[kept] for tissue in TISSUES])
    np.testing.assert_array_equal(evaluation.pooled_tissue.scores, scores[in_tissue])
    assert evaluation.pooled_tissue.stride == 2
    # The per-image metrics stay exact.
    assert m["pixel_auroc_mean"] == pytest.approx(0.9, abs=1e-15)
    write_evaluation(evaluation, tmp_path)
    assert "| Pixel AUROC, pooled over images, 1 pixel in 2 | 1.000 |" in (tmp_path / "metrics.md").read_text()


def test_image_scores_given_by_the_caller_make_the_image_level_auroc():
    # A normal image scoring 0.95 everywhere outranks the lesion image by any quantile of its heatmap.
    names, heatmaps = ("lesion", "normal"), [HEATMAPS[0], np.full((2, 3), 0.95)]
    lesions, tissues = [LESIONS[0], np.zeros((2, 3), dtype=bool)], [TISSUES[0], np.ones((2, 3), dtype=bool)]
    quantile = evaluate_images(_images(names, heatmaps, lesions, tissues), EvaluationConfig())
    assert (quantile.metrics["image_auroc"], quantile.metrics["image_score_quantile"]) == (0.0, 0.99)
    given = evaluate_images(_images(names, heatmaps, lesions, tissues), EvaluationConfig(), image_scores=[2.0, 1.0])
    assert (given.metrics["image_auroc"], given.metrics["image_ap"]) == (1.0, 1.0)
    assert [row["image_score"] for row in given.rows] == [2.0, 1.0]
    assert given.metrics["image_score_quantile"] is None
    assert any("image scores were given with the images" in note for note in given.metrics["notes"])
    assert given.pooled_tissue is None
    with pytest.raises(ValueError, match="image_scores must be 2 finite numbers, one per image, got shape \\(3,\\)"):
        evaluate_images(_images(names, heatmaps, lesions, tissues), EvaluationConfig(), image_scores=[1.0, 2.0, 3.0])


def test_a_calibration_source_sets_the_dice_threshold_and_shared_images_are_refused():
    calibration = _images(("c1",), HEATMAPS[:1], LESIONS[:1], TISSUES[:1])
    m = evaluate_images(_images(), EvaluationConfig(), calibration=calibration).metrics
    # On the first image alone any threshold in (0.4, 0.8] segments its lesion exactly.
    assert m["dice"]["n_calibration_images"] == 1 and m["dice"]["calibration_mean_dice"] == 1.0
    assert 0.4 < m["dice"]["threshold"] <= 0.8
    shared = _images(("c1",), HEATMAPS[:1], LESIONS[:1], TISSUES[:1], identities=["i1"])
    with pytest.raises(ConfigError, match="the calibration split holds 1 test image\\(s\\).*: i1$"):
        evaluate_images(_images(), EvaluationConfig(), calibration=shared)


def test_an_image_twice_or_no_image_is_refused():
    with pytest.raises(ConfigError, match="test images i1 and again are the same image \\(i1\\)"):
        evaluate_images(_images(("i1", "again"), identities=["i1", "i1"]), EvaluationConfig())
    with pytest.raises(ConfigError, match="the test split holds no image"):
        evaluate_images(_images((), [], [], []), EvaluationConfig())
    with pytest.raises(ValueError, match="ArrayImages: 2 names but"):
        _images(tissues=TISSUES[:1])


def test_the_fifth_of_test_dice_is_labelled_optimistic_and_leaves_the_other_dice_alone(tmp_path):
    # Five one-row images scoring 0.0 ... 0.9 whose lesions are their top 1 ... 5 pixels: on the one image that
    # chooses the threshold (the seeded fifth) it is exact, so the others' Dice is known by hand.
    heatmaps = [np.arange(10)[None] / 10 for _ in range(5)]
    lesions = [np.arange(10)[None] >= 9 - i for i in range(5)]
    tissues = [np.ones((1, 10), dtype=bool)] * 5
    images = _images([f"i{i}" for i in range(5)], heatmaps, lesions, tissues)
    calibration = _images(("c1",), heatmaps[:1], lesions[:1], tissues[:1])
    config = EvaluationConfig(dice_candidates=10)
    evaluation = evaluate_images(images, config, calibration=calibration)
    m = evaluation.metrics
    for prefix in ("", "tissue_"):
        record = m[f"{prefix}dice_fifth_of_test_optimistic"]
        k = int(np.count_nonzero(heatmaps[0] >= record["threshold"])) - 1  # the image it segments exactly
        expected = np.mean([2 * (min(k, j) + 1) / (k + j + 2) for j in range(5) if j != k])
        assert (record["n_images"], record["n_threshold_images"]) == (4, 1)
        assert record["mean"] == pytest.approx(expected)
        assert record["note"].startswith("optimistic: threshold from labelled test images")
    # The calibrated Dice still comes from the calibration image alone (threshold 0.9), on all five images.
    assert m["dice"]["threshold"] == pytest.approx(0.9) and m["dice"]["n_images"] == 5
    assert m["dice"]["mean"] == pytest.approx(np.mean([2 / (j + 2) for j in range(5)]))
    write_evaluation(evaluation, tmp_path)
    assert "Dice, threshold from a fifth of the test images (optimistic: threshold from labelled test images)" in (
        tmp_path / "metrics.md").read_text()  # fmt: skip
    one = evaluate_images(_images(("i1",), heatmaps[:1], lesions[:1], tissues[:1]), config).metrics
    assert one["dice_fifth_of_test_optimistic"] is None and any("fifth-of-test" in note for note in one["notes"])
