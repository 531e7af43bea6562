import numpy as np
import pytest

from picard_ad.errors import ConfigError, InputError
from picard_ad.localize.windows import WindowGrid, extract_windows, tissue_windows

PAPER = {"patch_size": 256, "mask_size": 128, "stride": 32}  # the PICARD paper's window geometry

AWKWARD_SHAPES = [(256, 256), (257, 257), (288, 288), (300, 511), (2457, 1996)]


def _reference_count(length: int, patch: int = 256, stride: int = 32) -> int:
    return (length - patch) // stride + 1


@pytest.mark.parametrize("shape", AWKWARD_SHAPES)
def test_grid_counts_are_the_reference_counts_plus_a_flush_row_exactly_when_needed(shape):
    grid = WindowGrid.cover(shape, **PAPER)
    for length, origins in zip(shape, (grid.row_origins, grid.col_origins)):
        flush = (length - 256) % 32 != 0
        assert len(origins) == _reference_count(length) + flush
        assert origins[-1] == length - 256
        regular = origins[:-1] if flush else origins
        assert list(regular) == list(range(0, 32 * len(regular), 32))
    assert grid.shape == tuple(len(o) for o in (grid.row_origins, grid.col_origins))
    assert grid.n_windows == grid.shape[0] * grid.shape[1]


def test_grid_of_a_mammogram_sized_image():
    grid = WindowGrid.cover((2457, 1996), **PAPER)
    # Reference: 69 x 55 windows, leaving the last 25 rows and 12 columns uncovered; here one flush row and column.
    assert grid.shape == (70, 56)
    assert grid.row_origins[-2:] == (2176, 2201)
    assert grid.col_origins[-2:] == (1728, 1740)


@pytest.mark.parametrize(
    "shape, patch, mask, stride",
    [(s, 256, 128, 32) for s in AWKWARD_SHAPES] + [((240, 240), 64, 32, 16), ((100, 70), 65, 33, 7)],
)
def test_every_pixel_lies_inside_a_window_and_every_window_inside_the_image(shape, patch, mask, stride):
    grid = WindowGrid.cover(shape, patch, mask, stride)
    covered = np.zeros(shape, dtype=int)
    for index in range(grid.n_windows):
        row, col = grid.origin(index)
        assert 0 <= row and row + patch <= shape[0] and 0 <= col and col + patch <= shape[1]
        covered[row : row + patch, col : col + patch] += 1
    assert covered.min() >= 1


def test_origin_is_row_major_and_mask_box_is_centred():
    grid = WindowGrid.cover((300, 511), **PAPER)
    assert grid.shape == (3, 9)
    assert grid.origin(0) == (0, 0)
    assert grid.origin(8) == (0, 255)
    assert grid.origin(9) == (32, 0)
    assert grid.origin(26) == (44, 255)
    assert grid.mask_box(26) == (44 + 64, 44 + 192, 255 + 64, 255 + 192)
    rows, cols = grid.mask_centres()
    np.testing.assert_array_equal(rows, [128, 160, 172])
    assert cols[-1] == 255 + 128
    with pytest.raises(IndexError):
        grid.origin(27)


def test_odd_sizes_centre_the_mask_exactly():
    grid = WindowGrid.cover((100, 70), patch_size=65, mask_size=33, stride=7)
    row0, row1, col0, col1 = grid.mask_box(0)
    assert (row0, row1, col0, col1) == (16, 49, 16, 49)
    rows, _ = grid.mask_centres()
    assert rows[0] == (row0 + row1 - 1) / 2 == 32


def test_image_smaller_than_the_patch_is_a_clear_input_error():
    with pytest.raises(InputError, match=r"200 x 300 pixels.*256 x 256.*--patch-size of at most 200"):
        WindowGrid.cover((200, 300), **PAPER)
    with pytest.raises(InputError) as caught:
        WindowGrid.cover((300, 255), **PAPER, path="scan.png")
    assert str(caught.value).startswith("scan.png: image is 300 x 255 pixels")
    assert caught.value.problem.startswith("image is 300 x 255")


@pytest.mark.parametrize(
    "patch, mask, stride, message",
    [(256, 300, 32, "mask size"), (256, 127, 32, "both even or both odd"), (256, 128, 0, "stride"), (0, 0, 1, "patch")],
)
def test_impossible_window_settings_are_config_errors(patch, mask, stride, message):
    with pytest.raises(ConfigError, match=message):
        WindowGrid.cover((512, 512), patch, mask, stride)


def test_direct_construction_rejects_windows_outside_the_image():
    with pytest.raises(ValueError, match="outside"):
        WindowGrid((300, 300), 256, 128, 32, row_origins=(0, 64), col_origins=(0,))
    with pytest.raises(ValueError, match="increasing"):
        WindowGrid((300, 300), 256, 128, 32, row_origins=(32, 0), col_origins=(0,))


def test_tissue_windows_on_a_half_background_image():
    tissue = np.zeros((256, 512), dtype=bool)
    tissue[:, :256] = True
    grid = WindowGrid.cover(tissue.shape, **PAPER)
    assert grid.shape == (1, 9)
    # Mask columns of window j are 32 j + 64 .. 32 j + 192; their tissue fraction is clip(192 - 32 j, 0, 128) / 128.
    kept = tissue_windows(grid, tissue)
    np.testing.assert_array_equal(kept[0], [True] * 6 + [False] * 3)
    half = tissue_windows(grid, tissue, min_tissue_fraction=0.5)
    np.testing.assert_array_equal(half[0], [True] * 4 + [False] * 5)
    # A window is kept for tissue in its mask, not for tissue elsewhere in the patch.
    only_patch_border = np.zeros((256, 256), dtype=bool)
    only_patch_border[:, :64] = True
    assert not tissue_windows(WindowGrid.cover((256, 256), **PAPER), only_patch_border).any()
    with pytest.raises(ValueError, match="shape"):
        tissue_windows(grid, tissue.T)


def test_extract_windows_cuts_the_indexed_windows():
    image = np.arange(300 * 511, dtype=np.float64).reshape(300, 511)
    grid = WindowGrid.cover(image.shape, **PAPER)
    indices = np.array([26, 0, 11])
    windows = extract_windows(image, grid, indices)
    assert windows.shape == (3, 256, 256) and windows.dtype == np.float32
    for window, index in zip(windows, indices):
        row, col = grid.origin(index)
        np.testing.assert_array_equal(window, image[row : row + 256, col : col + 256].astype(np.float32))
    assert extract_windows(image, grid, np.array([], dtype=int)).shape == (0, 256, 256)
    with pytest.raises(IndexError):
        extract_windows(image, grid, np.array([27]))
    with pytest.raises(ValueError, match="shape"):
        extract_windows(image[:, :-1], grid, indices)


def test_coverage_marks_the_pixels_of_each_window_row_and_column():
    grid = WindowGrid.cover((5, 6), patch_size=4, mask_size=2, stride=2)
    assert grid.row_origins == (0, 1) and grid.col_origins == (0, 2)
    rows, cols = grid.coverage("mask")
    np.testing.assert_array_equal(rows.T, [[0, 1, 1, 0, 0], [0, 0, 1, 1, 0]])
    np.testing.assert_array_equal(cols.T, [[0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0]])
    rows, cols = grid.coverage("patch")
    np.testing.assert_array_equal(rows.T, [[1, 1, 1, 1, 0], [0, 1, 1, 1, 1]])
    np.testing.assert_array_equal(cols.T, [[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]])
