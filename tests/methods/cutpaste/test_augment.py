"""The 3-way augmentation: right classes, pixels changed only where pasted, nothing cut from or pasted into blank."""

import numpy as np
import pytest

from picard_ad.methods.cutpaste import CutPasteAugmentation, cut_paste, scar, three_way
from picard_ad.methods.cutpaste.augment import CUT_PASTE, NORMAL, SCAR, box_corners

AUGMENTATION = CutPasteAugmentation()


def patch_with_blank_regions(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(patch, tissue): textured tissue in [0.2, 1] with a blank band on the left and a blank hole inside."""
    rng = np.random.default_rng(0)
    patch = rng.uniform(0.2, 1.0, (size, size)).astype(np.float32)
    rows, cols = np.mgrid[:size, :size]
    blank = (cols < size // 3) | ((rows - size // 2) ** 2 + (cols - 3 * size // 4) ** 2 < (size // 8) ** 2)
    patch[blank] = 0.0
    return patch, ~blank


@pytest.mark.parametrize("augment", [cut_paste, scar])
def test_nothing_is_cut_from_or_pasted_into_blank_regions(augment):
    patch, tissue = patch_with_blank_regions()
    rng = np.random.default_rng(1)
    made = [augment(patch, rng, AUGMENTATION) for _ in range(150)]
    made = [result for result in made if result is not None]  # None: the drawn rectangle fits nowhere on tissue
    assert len(made) > 100
    for result in made:
        assert result.pasted.any() and result.source.any()
        assert not (result.pasted & ~tissue).any(), "pasted into background"
        assert not (result.source & ~tissue).any(), "cut from background"
        assert np.array_equal(result.image[~result.pasted], patch[~result.pasted])  # only the paste changes pixels
        assert result.image.dtype == np.float32 and 0.0 <= result.image.min() and result.image.max() <= 1.0
    # the pastes do change the pasted pixels and land all over the tissue, not in one spot
    assert np.mean([np.any(r.image[r.pasted] != patch[r.pasted]) for r in made]) > 0.9
    assert np.logical_or.reduce([r.pasted for r in made]).sum() > 0.3 * tissue.sum()


def test_cut_paste_and_scar_sizes_follow_li_et_al():
    patch = np.full((256, 256), 0.5, np.float32)
    rng = np.random.default_rng(2)
    areas = [cut_paste(patch, rng, AUGMENTATION).pasted.mean() for _ in range(100)]
    assert 0.018 <= min(areas) and max(areas) <= 0.16  # 2-15 % of the patch, up to rounding of the sides
    scars = [scar(patch, rng, AUGMENTATION).pasted.sum() for _ in range(100)]
    assert 2 * 10 * 0.5 <= min(scars) and max(scars) <= 16 * 25 * 1.3  # a 2-16 x 10-25 px rectangle, turned


def test_three_way_gives_the_classes_in_order_and_the_patch_unchanged_as_normal():
    patch, _ = patch_with_blank_regions()
    views, labels = three_way(patch, np.random.default_rng(3), AUGMENTATION)
    assert views.shape == (3, 64, 64) and views.dtype == np.float32
    assert labels.tolist() == [NORMAL, CUT_PASTE, SCAR] == [0, 1, 2]
    assert np.array_equal(views[NORMAL], patch)
    assert not np.array_equal(views[CUT_PASTE], patch) and not np.array_equal(views[SCAR], patch)
    again, _ = three_way(patch, np.random.default_rng(3), AUGMENTATION)
    assert np.array_equal(views, again)  # the generator decides everything


def test_a_patch_without_room_on_tissue_gives_none():
    patch = np.zeros((64, 64), np.float32)
    patch[:, 30:33] = 0.5  # a 3 px strip of tissue: no 2 % rectangle fits
    assert cut_paste(patch, np.random.default_rng(4), AUGMENTATION) is None
    assert three_way(patch, np.random.default_rng(4), AUGMENTATION) is None


def test_box_corners_are_exactly_the_boxes_on_tissue():
    tissue = np.random.default_rng(5).random((12, 10)) > 0.2
    found = set(box_corners(tissue, 3, 2).tolist())
    expected = {row * 9 + col for row in range(10) for col in range(9) if tissue[row : row + 3, col : col + 2].all()}
    assert found == expected
    assert box_corners(tissue, 13, 2).size == 0
