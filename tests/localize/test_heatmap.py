import json

import numpy as np
import pytest
import torch
from networks import lively_generator

from picard_ad.data.phantoms import PhantomConfig, generate_phantom
from picard_ad.localize.heatmap import sliding_window_heatmap
from picard_ad.methods.picard import resolve_dropout_layers
from picard_ad.methods.picard.engine import CompletionEngine
from picard_ad.metrics.ranking import roc_auc


class HoleMean:
    """A scorer whose output is known exactly: the mean intensity of each window's 32 x 32 hole."""

    def __init__(self):
        self.seen: list[int] = []

    def __call__(self, windows, indices):
        self.seen.extend(int(i) for i in indices)
        return {"hole-mean": windows[:, 16:48, 16:48].mean(axis=(1, 2)), "constant": np.full(len(indices), 2.0)}


def half_black_image() -> np.ndarray:
    """128 x 192: columns 0..95 black background, the rest bright 'tissue' with some texture."""
    image = np.zeros((128, 192), dtype=np.float32)
    image[:, 96:] = 0.4 + 0.5 * np.random.default_rng(0).random((128, 96), dtype=np.float32)
    return image


def test_window_scores_are_the_scorers_values_at_their_grid_positions():
    image = half_black_image()
    scorer = HoleMean()
    heatmaps = sliding_window_heatmap(image, scorer, patch_size=64, mask_size=32, stride=16, tissue_threshold=None)
    heatmap = heatmaps["hole-mean"]
    assert heatmap.grid.shape == (5, 9) and heatmap.n_skipped_windows == 0
    for row, top in enumerate(range(0, 65, 16)):
        for col, left in enumerate(range(0, 129, 16)):
            expected = image[top + 16 : top + 48, left + 16 : left + 48].mean()
            assert heatmap.window_scores[row, col] == pytest.approx(expected, rel=1e-6)
    assert heatmap.array.shape == image.shape and heatmap.array.dtype == np.float32
    # Interpolation is registered to the mask centres: the pixel at a window's centre holds its score.
    assert heatmap.array[32 + 16, 32 + 64] == pytest.approx(heatmap.window_scores[1, 4], rel=1e-5)
    np.testing.assert_allclose(heatmaps["constant"].array, 2.0)


def test_background_windows_are_skipped_counted_and_get_the_lowest_score():
    scorer = HoleMean()
    heatmap = sliding_window_heatmap(half_black_image(), scorer, patch_size=64, mask_size=32, stride=16)["hole-mean"]
    # Window columns start at 0, 16, ..., 128; the hole spans origin + 16 .. origin + 48, so the holes of the
    # first four columns (origins 0..48) lie wholly in the black half: 4 columns x 5 rows.
    assert heatmap.n_windows == 45
    assert heatmap.n_skipped_windows == 20
    assert heatmap.skipped[:, :4].all() and not heatmap.skipped[:, 4:].any()
    assert len(scorer.seen) == 25 and not {row * 9 + col for row in range(5) for col in range(4)} & set(scorer.seen)
    scored = heatmap.window_scores[~heatmap.skipped]
    np.testing.assert_array_equal(heatmap.window_scores[heatmap.skipped], scored.min())
    assert heatmap.array.min() == pytest.approx(scored.min())
    assert heatmap.timings["scored_windows"] == 25
    sidecar = json.loads(json.dumps(heatmap.to_sidecar()))
    assert sidecar["n_skipped_windows"] == 20 and sidecar["grid_shape"] == [5, 9]


def test_chunking_does_not_change_the_result():
    image = half_black_image()
    whole = sliding_window_heatmap(image, HoleMean(), patch_size=64, mask_size=32, stride=16, chunk_size=1000)
    pieces = sliding_window_heatmap(image, HoleMean(), patch_size=64, mask_size=32, stride=16, chunk_size=3)
    np.testing.assert_array_equal(whole["hole-mean"].array, pieces["hole-mean"].array)


def test_all_background_gives_an_all_lowest_map():
    heatmap = sliding_window_heatmap(np.zeros((96, 96), np.float32), HoleMean(), patch_size=64, mask_size=32,
                                     stride=16)["hole-mean"]
    assert heatmap.n_skipped_windows == heatmap.n_windows == 9
    assert not heatmap.array.any()


def test_averaged_mode_spreads_each_score_over_its_hole():
    image = half_black_image()
    heatmap = sliding_window_heatmap(image, HoleMean(), patch_size=64, mask_size=32, stride=32, mode="averaged",
                                     tissue_threshold=None)["hole-mean"]
    # Stride 32 = mask size: the holes tile the interior without overlap, so each hole pixel is its window's score.
    assert heatmap.array[20, 20] == pytest.approx(image[16:48, 16:48].mean(), rel=1e-6)
    assert heatmap.settings["assembly"] == "averaged"


def test_bf16_heatmaps_match_float32_in_pixel_auroc():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        auroc, relative = _bf16_and_float32_heatmaps()
    finally:
        torch.set_num_threads(threads)
    assert abs(auroc[True] - auroc[False]) <= 0.002
    assert 0 < relative < 0.02  # bf16 really ran (not bit-identical) and stayed close


def _bf16_and_float32_heatmaps():
    """Pooled pixel AUROC of MCD heatmaps of three small phantoms by precision, and their largest relative gap.

    The network is untrained, so the AUROC itself means nothing; the test is that bf16 does not move it.
    """
    config = PhantomConfig(size=(160, 128), pixel_spacing_mm=0.5, mass_diameter_mm=(5.0, 9.0),
                           calcification_cluster_mm=(4.0, 6.0), lesion_kinds=("round", "lobulated"), side="L")
    phantoms = [generate_phantom(config, seed=seed, n_lesions=1) for seed in range(3)]
    labels = np.concatenate([phantom.lesion_mask.ravel() for phantom in phantoms])
    generator = lively_generator()
    maps = {}
    for bf16 in (False, True):
        engine = CompletionEngine(generator, None, mask_size=32, n_completions=3, bf16=bf16, channels_last=bf16,
                                  dropout_layers=resolve_dropout_layers("reference"))
        maps[bf16] = [
            sliding_window_heatmap(phantom.image, engine.scorer(["mcd-image"]), patch_size=64, mask_size=32,
                                   stride=16)["mcd-image"].array
            for phantom in phantoms
        ]
    auroc = {bf16: roc_auc(labels, np.concatenate([m.ravel() for m in maps[bf16]])) for bf16 in maps}
    relative = max(np.abs(a - b).max() / np.abs(a).max() for a, b in zip(maps[True], maps[False]))
    return auroc, relative
