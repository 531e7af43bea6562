"""Gaussian densities: Ledoit-Wolf as scikit-learn's, per-location means and covariances, Mahalanobis distances."""

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf
from sklearn.covariance import ledoit_wolf as sklearn_ledoit_wolf

from picard_ad.methods.cutpaste import GaussianDensity, ledoit_wolf


@pytest.mark.parametrize("n, dims", [(60, 8), (12, 30), (2, 5), (40, 1)])
def test_ledoit_wolf_equals_scikit_learn(n, dims):
    rng = np.random.default_rng(n + dims)
    x = rng.normal(size=(n, dims)) @ rng.normal(size=(dims, dims)) + rng.normal(size=dims)
    covariance, shrinkage = ledoit_wolf(x)
    expected, expected_shrinkage = sklearn_ledoit_wolf(x)
    np.testing.assert_allclose(covariance, expected, rtol=1e-10, atol=1e-12)
    assert shrinkage == pytest.approx(expected_shrinkage, rel=1e-10, abs=1e-14)


def test_per_location_gaussians_are_numpys_mean_and_shrunk_covariance():
    rng = np.random.default_rng(0)
    groups = [rng.normal(loc, scale, size=(count, 6)) for loc, scale, count in ((0, 1, 40), (3, 0.5, 25), (-1, 2, 9))]
    density = GaussianDensity.fit(groups)
    assert density.n_locations == 3 and density.dims == 6 and density.count.tolist() == [40, 25, 9]
    for location, group in enumerate(groups):
        np.testing.assert_allclose(density.mean[location], group.mean(axis=0), rtol=1e-6, atol=1e-6)
        shrinkage = float(density.shrinkage[location])
        empirical = np.cov(group, rowvar=False, bias=True)
        target = np.trace(empirical) / 6 * np.eye(6)
        np.testing.assert_allclose(density.covariance[location], (1 - shrinkage) * empirical + shrinkage * target,
                                   rtol=1e-5, atol=1e-6)  # fmt: skip
        fitted = LedoitWolf().fit(group)
        assert shrinkage == pytest.approx(fitted.shrinkage_, rel=1e-6)
        np.testing.assert_allclose(density.precision[location], fitted.precision_, rtol=1e-4, atol=1e-5)
    assert density.covariance.dtype == density.precision.dtype == np.float32


def test_one_feature_is_not_shrunk_and_is_numpys_variance():
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(50, 1))
    density = GaussianDensity.fit([x])
    assert density.shrinkage[0] == 0.0
    assert density.covariance[0, 0, 0] == pytest.approx(np.var(x), rel=1e-6)


def test_mahalanobis_distance_is_the_hand_computed_one():
    covariance = np.array([[4.0, 1.0], [1.0, 2.0]])
    mean = np.array([1.0, -1.0])
    density = GaussianDensity(
        mean=mean[None].astype(np.float32),
        covariance=covariance[None].astype(np.float32),
        precision=np.linalg.inv(covariance)[None].astype(np.float32),
        shrinkage=np.zeros(1, np.float32),
        count=np.array([10]),
    )
    points = np.array([[1.0, -1.0], [3.0, -1.0], [0.0, 2.0]])
    # by hand: inverse of [[4, 1], [1, 2]] is [[2, -1], [-1, 4]] / 7
    by_hand = [0.0, np.sqrt(2 * 2 * 2 / 7), np.sqrt((2 * 1 + 2 * 1 * 3 + 4 * 9) / 7)]
    np.testing.assert_allclose(density.distance(points), by_hand, rtol=1e-6)
    # per location: each point against its own location's Gaussian
    two = GaussianDensity(*(np.concatenate([a, b]) for a, b in zip(
        (density.mean, density.covariance, density.precision, density.shrinkage, density.count),
        (np.zeros((1, 2), np.float32), np.eye(2, dtype=np.float32)[None], np.eye(2, dtype=np.float32)[None],
         np.zeros(1, np.float32), np.array([5])),
    )))  # fmt: skip
    np.testing.assert_allclose(two.distance(points, np.array([0, 1, 1])), [0.0, np.sqrt(10), 2.0],
                               rtol=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match="need the location"):
        two.distance(points)


def test_a_location_with_too_few_windows_takes_the_fallback():
    rng = np.random.default_rng(2)
    shared = GaussianDensity.fit([rng.normal(size=(30, 4))])
    located = GaussianDensity.fit([rng.normal(size=(10, 4)), np.zeros((1, 4)), np.zeros((0, 4))], fallback=shared)
    assert located.count.tolist() == [10, 0, 0]
    assert np.array_equal(located.precision[2], shared.precision[0]) and np.array_equal(located.mean[1], shared.mean[0])
    with pytest.raises(ValueError, match="at least 2 embeddings"):
        GaussianDensity.fit([np.zeros((1, 4))])


def test_tensors_round_trip():
    density = GaussianDensity.fit([np.random.default_rng(3).normal(size=(20, 3))] * 2)
    tensors = density.tensors("per-location")
    back = GaussianDensity.from_tensors(tensors, "per-location")
    assert all(np.array_equal(getattr(back, name), getattr(density, name))
               for name in ("mean", "covariance", "precision", "shrinkage", "count"))  # fmt: skip


def test_ledoit_wolf_in_row_blocks_equals_one_block(monkeypatch):
    x = np.random.default_rng(4).normal(size=(50, 6)).astype(np.float32)
    whole = ledoit_wolf(x)
    monkeypatch.setattr("picard_ad.methods.cutpaste.gde.ROW_BLOCK", 7)
    blocked = ledoit_wolf(x)
    np.testing.assert_allclose(blocked[0], whole[0], rtol=1e-12)
    assert blocked[1] == pytest.approx(whole[1], rel=1e-12)
    np.testing.assert_allclose(whole[0], sklearn_ledoit_wolf(x.astype(np.float64))[0], rtol=1e-9)
