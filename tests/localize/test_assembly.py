import numpy as np
import pytest

from picard_ad.localize.assembly import assemble_heatmap
from picard_ad.localize.windows import WindowGrid

PAPER = {"patch_size": 256, "mask_size": 128, "stride": 32}  # the PICARD paper's window geometry

GRIDS = [
    ((256, 256), 256, 128, 32),
    ((257, 257), 256, 128, 32),
    ((288, 288), 256, 128, 32),
    ((300, 511), 256, 128, 32),
    ((2457, 1996), 256, 128, 32),
    ((240, 240), 64, 32, 16),
]


def _random_scores(grid, seed, skipped_fraction=0.2):
    rng = np.random.default_rng(seed)
    # float32-representable scores, so bounds can be compared exactly with the float32 heatmap
    scores = rng.random(grid.shape).astype(np.float32).astype(np.float64)
    scores[rng.random(grid.shape) < skipped_fraction] = np.nan
    if np.isnan(scores).all():
        scores[0, 0] = 0.5
    return scores


@pytest.mark.parametrize("mode", ["interpolated", "averaged"])
@pytest.mark.parametrize("shape, patch, mask, stride", GRIDS)
def test_every_pixel_finite_and_inside_the_scores_range(shape, patch, mask, stride, mode):
    grid = WindowGrid.cover(shape, patch, mask, stride)
    scores = _random_scores(grid, seed=sum(shape))
    heatmap = assemble_heatmap(scores, grid, mode)
    assert heatmap.shape == shape and heatmap.dtype == np.float32
    assert np.isfinite(heatmap).all()
    assert heatmap.min() >= np.nanmin(scores)
    assert heatmap.max() <= np.nanmax(scores)


@pytest.mark.parametrize("shape, patch, mask, stride", GRIDS)
def test_each_score_sits_exactly_on_its_mask_centre_pixel(shape, patch, mask, stride):
    grid = WindowGrid.cover(shape, patch, mask, stride)
    scores = _random_scores(grid, seed=7, skipped_fraction=0.0)
    heatmap = assemble_heatmap(scores, grid)
    rows, cols = (c.astype(int) for c in grid.mask_centres())
    np.testing.assert_array_equal(heatmap[np.ix_(rows, cols)], scores.astype(np.float32))


@pytest.mark.parametrize("window", [(1, 1), (30, 17), (68, 54), (68, 1)])
def test_planted_score_peaks_at_its_window_centre_only(window):
    grid = WindowGrid.cover((2457, 1996), **PAPER)
    scores = np.full(grid.shape, 0.25)
    scores[window] = 1.0
    heatmap = assemble_heatmap(scores, grid)
    rows, cols = grid.mask_centres()
    centre = (int(rows[window[0]]), int(cols[window[1]]))
    assert np.unravel_index(np.argmax(heatmap), heatmap.shape) == centre
    assert heatmap[centre] == 1.0
    assert np.count_nonzero(heatmap == 1.0) == 1
    # the peak falls to the background level at the neighbouring centres, without ringing around it
    assert heatmap[int(rows[window[0] + 1]), centre[1]] == 0.25
    assert heatmap.min() == 0.25


def test_planted_score_in_a_corner_window_extends_constantly_to_the_borders():
    grid = WindowGrid.cover((300, 511), **PAPER)
    scores = np.zeros(grid.shape)
    scores[-1, -1] = 1.0  # the flush window at the bottom-right corner: centre (300 - 128, 511 - 128)
    heatmap = assemble_heatmap(scores, grid)
    peak = np.zeros(heatmap.shape, dtype=bool)
    peak[300 - 128 :, 511 - 128 :] = True
    np.testing.assert_array_equal(heatmap == 1.0, peak)


@pytest.mark.parametrize("shape, patch, mask, stride", [GRIDS[3], GRIDS[4], GRIDS[5]])
def test_linear_ramp_over_centres_is_reproduced_between_them(shape, patch, mask, stride):
    grid = WindowGrid.cover(shape, patch, mask, stride)
    rows, cols = grid.mask_centres()
    scores = 0.5 + 1e-3 * rows[:, None] - 2e-3 * cols[None, :]
    heatmap = assemble_heatmap(scores, grid)
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    pixel_rows, pixel_cols = np.arange(r0, r1 + 1), np.arange(c0, c1 + 1)
    expected = 0.5 + 1e-3 * pixel_rows[:, None] - 2e-3 * pixel_cols[None, :]
    np.testing.assert_allclose(heatmap[r0 : r1 + 1, c0 : c1 + 1], expected, rtol=0, atol=1e-5)
    # constant beyond the outermost centres
    np.testing.assert_array_equal(heatmap[:r0], np.broadcast_to(heatmap[r0], (r0, shape[1])))
    np.testing.assert_array_equal(heatmap[:, c1:], np.broadcast_to(heatmap[:, c1 : c1 + 1], (shape[0], shape[1] - c1)))


def test_skipped_windows_take_the_fill_value_before_interpolation():
    grid = WindowGrid.cover((300, 511), **PAPER)
    scores = np.full(grid.shape, 2.0)
    scores[0, 0] = 0.5
    scores[1, 4] = np.nan
    rows, cols = (c.astype(int) for c in grid.mask_centres())
    assert assemble_heatmap(scores, grid)[rows[1], cols[4]] == 0.5
    assert assemble_heatmap(scores, grid, fill=-1.0)[rows[1], cols[4]] == -1.0
    with pytest.raises(ValueError, match="fill"):
        assemble_heatmap(scores, grid, fill="max")


@pytest.mark.parametrize("mode", ["interpolated", "averaged"])
def test_all_skipped_gives_a_zero_map(mode):
    grid = WindowGrid.cover((300, 300), **PAPER)
    heatmap = assemble_heatmap(np.full(grid.shape, np.nan), grid, mode)
    assert heatmap.shape == (300, 300) and not heatmap.any()


def test_single_window_image_works_in_both_modes():
    grid = WindowGrid.cover((256, 256), **PAPER)
    assert grid.shape == (1, 1)
    np.testing.assert_array_equal(assemble_heatmap(np.array([[3.0]]), grid), np.full((256, 256), 3.0))
    averaged = assemble_heatmap(np.array([[3.0]]), grid, "averaged", fill=0.0)
    expected = np.zeros((256, 256))
    expected[64:192, 64:192] = 3.0
    np.testing.assert_array_equal(averaged, expected)


# 5 x 5 image, 4-pixel windows with 2-pixel masks, stride 1: origins (0, 1) on both axes, so the mask of window
# (i, j) covers rows 1 + i .. 2 + i and columns 1 + j .. 2 + j.
SMALL_SCORES = np.array([[0.0, 4.0], [8.0, 12.0]])


def _small_grid():
    return WindowGrid.cover((5, 5), patch_size=4, mask_size=2, stride=1)


def test_averaged_mask_footprint_by_hand():
    expected = [
        [0, 0, 0, 0, 0],
        [0, 0, 2, 4, 0],
        [0, 4, 6, 8, 0],
        [0, 8, 10, 12, 0],
        [0, 0, 0, 0, 0],
    ]
    np.testing.assert_array_equal(assemble_heatmap(SMALL_SCORES, _small_grid(), "averaged"), expected)


def test_averaged_patch_footprint_by_hand():
    expected = [
        [0, 2, 2, 2, 4],
        [4, 6, 6, 6, 8],
        [4, 6, 6, 6, 8],
        [4, 6, 6, 6, 8],
        [8, 10, 10, 10, 12],
    ]
    heatmap = assemble_heatmap(SMALL_SCORES, _small_grid(), "averaged", footprint="patch")
    np.testing.assert_array_equal(heatmap, expected)


def test_averaged_ignores_skipped_windows_and_fills_uncovered_pixels():
    scores = SMALL_SCORES.copy()
    scores[1, 1] = np.nan
    expected = [
        [-1, -1, -1, -1, -1],
        [-1, 0, 2, 4, -1],
        [-1, 4, 4, 4, -1],
        [-1, 8, 8, -1, -1],
        [-1, -1, -1, -1, -1],
    ]
    np.testing.assert_array_equal(assemble_heatmap(scores, _small_grid(), "averaged", fill=-1.0), expected)


def test_invalid_scores_and_options_are_rejected():
    grid = _small_grid()
    with pytest.raises(ValueError, match="shape"):
        assemble_heatmap(np.zeros((3, 2)), grid)
    with pytest.raises(ValueError, match="infinite"):
        assemble_heatmap(np.array([[0.0, np.inf], [1.0, 2.0]]), grid)
    with pytest.raises(ValueError, match="mode"):
        assemble_heatmap(SMALL_SCORES, grid, "bicubic")
    with pytest.raises(ValueError, match="footprint"):
        assemble_heatmap(SMALL_SCORES, grid, "averaged", footprint="box")
