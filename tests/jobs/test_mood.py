"""MOOD scoring: the fixed squashing, float16 tie breaking of voxel scores, and volumes scored slice by slice."""

import itertools

import nibabel
import numpy as np
import pytest

from picard_ad.errors import ConfigError
from picard_ad.jobs.mood import (
    FLOAT16_ONE,
    MoodSettings,
    break_float16_ties,
    float16_floor_codes,
    output_path,
    pixel_scores,
    run_case,
    score_volume,
    squash,
)

SETTINGS = MoodSettings(center=1.0, scale=0.1)


def plain_scores(raw: np.ndarray) -> np.ndarray:
    """The fixed mapping without tie breaking: g rounded down to float16, as float32."""
    return float16_floor_codes(squash(raw, SETTINGS)).astype(np.uint16).view(np.float16).astype(np.float32)


def tied_voxels(raw: np.ndarray) -> np.ndarray:
    """Voxels whose plain float16 value is shared with another distinct raw value of the same volume."""
    values, voxel_value = np.unique(raw.ravel(), return_inverse=True)
    codes = float16_floor_codes(squash(values, SETTINGS))
    used, n_values = np.unique(codes, return_counts=True)
    return np.isin(codes, used[n_values > 1])[voxel_value].reshape(raw.shape)


def raw_on_code(code: int, fraction: float) -> float:
    """A raw score whose g lies ``fraction`` of the way from float16 code ``code`` to the next one (SETTINGS)."""
    low, high = (float(np.array([c], dtype=np.uint16).view(np.float16)[0]) for c in (code, code + 1))
    target = low + fraction * (high - low)
    center, scale = SETTINGS.squashing
    return center + scale * np.log(target / (1 - target))


def assert_exact_float16_in_unit_interval(scores: np.ndarray) -> None:
    assert scores.dtype == np.float32
    assert 0.0 <= scores.min() and scores.max() <= 1.0
    np.testing.assert_array_equal(scores.astype(np.float16).astype(np.float32), scores)


def test_squash_is_the_fixed_logistic():
    values = squash(np.array([1.0, 1.1, 0.0, 50.0, -50.0]), SETTINGS)
    np.testing.assert_allclose(values, [0.5, 1 / (1 + np.exp(-1)), 1 / (1 + np.exp(10)), 1.0, 0.0], atol=1e-15)


def test_float16_floor_codes_never_round_up():
    values = np.array([0.0, 1e-9, 0.3, 0.99999, 1.0, 1.5])
    floors = float16_floor_codes(values).astype(np.uint16).view(np.float16).astype(np.float64)
    assert np.all(floors <= np.clip(values, 0, 1))
    assert floors[3] == np.float16(1 - 2**-11) and floors[4] == 1.0 and floors[5] == 1.0
    assert float16_floor_codes(np.array([1.0]))[0] == FLOAT16_ONE


def test_constructed_codes_land_where_intended():
    raw = np.array([raw_on_code(0x3000, 0.2), raw_on_code(0x3000, 0.8), raw_on_code(0x3001, 0.5)])
    np.testing.assert_array_equal(float16_floor_codes(squash(raw, SETTINGS)), [0x3000, 0x3000, 0x3001])


def test_untied_voxels_keep_the_fixed_mapping_whatever_else_the_volume_holds():
    rng = np.random.default_rng(2)
    shared = rng.uniform(0.0, 3.0, size=4000)  # above ~1.8 float16 crowds and distinct raw values tie
    first = np.concatenate([shared, rng.uniform(0.0, 3.0, size=3000)]).reshape(70, 100)
    second = np.concatenate([shared, rng.uniform(-1.0, 0.5, size=9000)]).reshape(130, 100)
    outputs = []
    for raw in (first, second):
        scores = pixel_scores(raw, SETTINGS)
        assert_exact_float16_in_unit_interval(scores)
        untied = ~tied_voxels(raw)
        np.testing.assert_array_equal(scores[untied], plain_scores(raw)[untied])
        outputs.append((scores.ravel()[:4000], untied.ravel()[:4000]))
    (first_shared, first_untied), (second_shared, second_untied) = outputs
    both = first_untied & second_untied
    assert 0 < both.sum() < 4000  # some shared values are tied in a volume, most are not
    np.testing.assert_array_equal(first_shared[both], second_shared[both])


def test_order_of_raw_values_is_kept_and_ties_broken_where_float16_has_room():
    rng = np.random.default_rng(1)
    raw = np.concatenate([np.round(rng.normal(1.0, 0.5, size=6000), 2),  # many exact raw ties
                          rng.uniform(2.5, 2.6, size=300),  # crowded on float16's last steps below 1
                          [raw_on_code(0x3000, f) for f in (0.1, 0.4, 0.7)]])  # tied, with free codes around
    scores = pixel_scores(raw, SETTINGS)
    assert_exact_float16_in_unit_interval(scores)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(scores[order].astype(np.float64)) >= 0)  # monotone
    for value in np.unique(raw):
        assert np.unique(scores[raw == value]).size == 1  # equal raw values stay equal
    assert np.all(np.diff(scores[-3:].astype(np.float64)) > 0)  # strictly ordered where there is room
    assert np.unique(scores).size > np.unique(plain_scores(raw)).size
    np.testing.assert_array_equal(pixel_scores(raw, SETTINGS), scores)  # deterministic


def test_ties_change_the_fewest_voxels():
    # Four distinct raw values tie on code 0x3000 with 1, 5, 1 and 1 voxels; untied values on 0x2FFD and 0x3004
    # leave two free codes below and three above. Keeping the four apart moves at least three of them: at least
    # 3 voxels change, and only 3 if the 5-voxel value stays.
    tied = [raw_on_code(0x3000, f) for f in (0.1, 0.3, 0.5, 0.7)]
    counts = [1, 5, 1, 1]
    raw = np.array([raw_on_code(0x2FFD, 0.5), *np.repeat(tied, counts), raw_on_code(0x3004, 0.5)])
    codes = pixel_scores(raw, SETTINGS).astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(codes, [0x2FFD, 0x2FFF, *[0x3000] * 5, 0x3001, 0x3002, 0x3004])
    changed = codes != float16_floor_codes(squash(raw, SETTINGS))
    assert changed.sum() == 3
    # Among all 15 order-keeping choices of four distinct codes from the free ones and 0x3000, none changes fewer
    # voxels, and none as few with fewer voxel-steps (float16 steps times voxels).
    weights = np.array(counts)
    costs = {offsets: (int(weights[np.array(offsets) != 0].sum()), int(weights @ np.abs(offsets)))
             for offsets in itertools.combinations(range(-2, 4), 4)}  # fmt: skip
    ours = tuple(int(code) - 0x3000 for code in codes[[1, 2, 7, 8]])  # one voxel of each tied value
    assert len(costs) == 15 and costs[ours] == (3, 4) == min(costs.values())


def test_break_float16_ties_shares_a_free_run_and_leaves_crowded_ties():
    # Groups on codes 5 and 9 (three values each) share the free codes 6, 7, 8: the lower takes one, the upper
    # two. The group on 20 has its neighbours on 19 and 21 and stays tied; the untied values never move.
    codes = np.array([5, 5, 5, 9, 9, 9, 19, 20, 20, 21])
    broken = break_float16_ties(codes, np.ones(codes.size, dtype=int))
    np.testing.assert_array_equal(broken, [4, 5, 6, 8, 9, 10, 19, 20, 20, 21])
    # Saturated or vanishing g: one group on 1.0 or on 0.0 spreads into the free codes below or above.
    np.testing.assert_array_equal(break_float16_ties(np.full(4, FLOAT16_ONE), np.ones(4, dtype=int)),
                                  np.arange(FLOAT16_ONE - 3, FLOAT16_ONE + 1))
    np.testing.assert_array_equal(break_float16_ties(np.zeros(3), np.ones(3, dtype=int)), [0, 1, 2])
    # The value with the most voxels keeps its code, even where moving it would separate more values: a group on
    # 0.0 whose highest value holds 9 voxels stays tied, and so does a background value below its neighbours.
    np.testing.assert_array_equal(break_float16_ties(np.zeros(3), np.array([1, 1, 9])), [0, 0, 0])
    background = break_float16_ties(np.array([100, 100, 100, 100, 101]), np.array([10**6, 1, 1, 1, 1]))
    np.testing.assert_array_equal(background, [100, 100, 100, 100, 101])
    np.testing.assert_array_equal(break_float16_ties(np.array([100, 100, 100, 100]), np.array([3, 1, 9, 1])),
                                  [98, 99, 100, 101])
    # Too many values for the room: the outermost step out one code each, the middle stays tied.
    np.testing.assert_array_equal(break_float16_ties(np.array([3, 4, 4, 4, 4, 4, 6]), np.ones(7, dtype=int)),
                                  [3, 4, 4, 4, 4, 5, 6])


def test_saturated_and_vanishing_scores_stay_ordered():
    for raw in (np.linspace(100.0, 101.0, 2000), np.linspace(-100.0, -99.0, 2000)):  # g == 1 or 0 throughout
        scores = pixel_scores(raw, SETTINGS)
        assert_exact_float16_in_unit_interval(scores)
        assert np.all(np.diff(scores.astype(np.float64)) > 0)


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="scale"):
        MoodSettings(scale=0.0)
    with pytest.raises(ConfigError, match="task"):
        MoodSettings(task="voxel")


def write_volume(path, shape=(24, 20, 6)):
    data = np.zeros(shape, dtype=np.float32)
    data[4:20, 3:17] = 100.0
    data[10:14, 8:12, 2:4] = 300.0  # a bright block: the brightness map peaks there
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 3.0]
    nibabel.save(nibabel.Nifti1Image(data, affine), path)
    return affine


def brightness(image, origin=None):
    return image.astype(np.float32)


@pytest.mark.parametrize("axis", [0, 2])
def test_score_volume_keeps_the_stored_geometry(tmp_path, axis):
    path = tmp_path / "case.nii.gz"
    write_volume(path)
    scored = score_volume(path, brightness, axis=axis)
    assert scored.scores.shape == scored.tissue.shape == (24, 20, 6)
    stored = np.asarray(nibabel.load(path).dataobj)
    np.testing.assert_allclose(scored.scores, np.clip(stored / np.percentile(stored, 99.9), 0, 1), atol=1e-6)
    np.testing.assert_array_equal(scored.tissue, stored > 0)  # the bright rectangle is the tissue, background 0
    assert scored.sample == pytest.approx(1.0)  # 99th percentile of the slices through the block is its value


def test_run_case_writes_once(tmp_path):
    path = tmp_path / "in" / "case.nii"
    path.parent.mkdir()
    affine = write_volume(path, shape=(16, 12, 4, 1))
    out = tmp_path / "out"
    assert run_case(path, out, brightness, SETTINGS)
    written = nibabel.load(out / "case.nii")
    assert written.shape == (16, 12, 4, 1) and written.get_data_dtype() == np.float32
    np.testing.assert_allclose(written.affine, affine)
    assert output_path(path, out, "sample").name == "case.nii.txt"
    assert not run_case(path, out, lambda image, origin: pytest.fail("a finished case was scored again"), SETTINGS)
