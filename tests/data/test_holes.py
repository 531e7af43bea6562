import numpy as np
import pytest
import torch

from picard_ad.data.holes import centred_hole_masks, sample_hole_masks


def _hole_extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


@pytest.mark.parametrize(("patch", "hole", "shrink"), [(256, 128, 16), (64, 32, 4)])
def test_holes_lie_in_the_shared_box_and_shrink_symmetrically(patch, hole, shrink):
    rng = np.random.default_rng(0)
    for _ in range(10):
        holes = sample_hole_masks(8, patch, hole, shrink, rng)
        top, left, height, width = holes.bbox
        assert holes.mask.shape == (8, 1, patch, patch) and holes.mask.dtype == torch.float32
        assert (height, width) == (hole, hole)
        assert 0 <= top <= patch - hole and 0 <= left <= patch - hole
        for sample in holes.mask[:, 0].numpy():
            assert set(np.unique(sample).tolist()) == {0.0, 1.0}
            r0, r1, c0, c1 = _hole_extent(sample)
            assert sample[r0:r1, c0:c1].all()  # one solid rectangle
            assert sample.sum() == (r1 - r0) * (c1 - c0)
            shrink_rows, shrink_cols = r0 - top, c0 - left
            assert 0 <= shrink_rows <= shrink and 0 <= shrink_cols <= shrink
            assert top + height - r1 == shrink_rows and left + width - c1 == shrink_cols


def test_box_positions_cover_the_patch_and_shrinks_cover_their_range():
    rng = np.random.default_rng(1)
    tops, shrinks = set(), set()
    for _ in range(400):
        holes = sample_hole_masks(4, 64, 32, 4, rng)
        tops.add(holes.bbox[0])
        for sample in holes.mask[:, 0].numpy():
            shrinks.add(_hole_extent(sample)[0] - holes.bbox[0])
    assert tops == set(range(33))  # box anywhere, both extremes included
    assert shrinks == set(range(5))  # 0..max_shrink inclusive, as the reference's 96..128 px holes


def test_holes_are_reproducible_from_the_generator_state():
    first = sample_hole_masks(5, 64, 32, 4, np.random.default_rng(7))
    second = sample_hole_masks(5, 64, 32, 4, np.random.default_rng(7))
    other = sample_hole_masks(5, 64, 32, 4, np.random.default_rng(8))
    assert torch.equal(first.mask, second.mask) and first.bbox == second.bbox
    assert not torch.equal(first.mask, other.mask)


def test_no_shrink_gives_the_full_box_and_bad_geometry_is_refused():
    holes = sample_hole_masks(3, 64, 32, 0, np.random.default_rng(0))
    assert float(holes.mask.sum()) == 3 * 32 * 32
    with pytest.raises(ValueError, match="max_shrink"):
        sample_hole_masks(1, 64, 32, 16, np.random.default_rng(0))
    with pytest.raises(ValueError, match="hole_size"):
        sample_hole_masks(1, 64, 96, 0, np.random.default_rng(0))


def test_centred_holes_match_the_test_time_window():
    holes = centred_hole_masks(2, 256, 128)
    assert holes.bbox == (64, 64, 128, 128)
    assert holes.mask[:, :, 64:192, 64:192].all()
    assert float(holes.mask.sum()) == 2 * 128 * 128
