"""The blocked exact search equals brute force to the bit; the faiss index finds what it scans."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from picard_ad.errors import MissingDependencyError
from picard_ad.methods.patchsvdd.search import ExactIndex, brute_force_neighbours, squared_distances


def _features(rng: np.random.Generator, n: int, dim: int = 8, offset: float = 0.0) -> np.ndarray:
    return (offset + np.tanh(rng.normal(size=(n, dim)))).astype(np.float32)


def _assert_same(found, truth) -> None:
    assert np.array_equal(found.indices, truth.indices)
    assert np.array_equal(found.distances, truth.distances)  # bit for bit, not approximately


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("block_rows", [1, 2, 7, 64, 500, None])
def test_the_blocked_search_equals_brute_force(k, block_rows):
    rng = np.random.default_rng(0)
    bank, queries = _features(rng, 300), _features(rng, 40)
    _assert_same(ExactIndex(bank, block_rows=block_rows).search(queries, k), brute_force_neighbours(queries, bank, k))


@pytest.mark.parametrize("block_rows", [1, 3, 50, None])
def test_ties_go_to_the_lower_bank_row_in_every_block(block_rows):
    rng = np.random.default_rng(1)
    bank = _features(rng, 120)
    bank[[30, 75, 110]] = bank[5]  # four copies, in different blocks
    mirror = bank[5].copy()
    mirror[0] += 0.5
    bank[90], bank[20] = mirror, bank[5] - (mirror - bank[5])  # two rows equally far from the query below
    queries = np.stack([bank[5], bank[5] + (mirror - bank[5]) / 2])
    truth = brute_force_neighbours(queries, bank, 4)
    assert truth.indices[0].tolist() == [5, 30, 75, 110] and truth.distances[0].tolist() == [0, 0, 0, 0]
    _assert_same(ExactIndex(bank, block_rows=block_rows).search(queries, 4), truth)


def test_cancellation_far_from_the_origin_does_not_change_the_answer():
    # norms of about 100 and distances of about 1e-3: a plain float32 a^2 - 2ab + b^2 is all rounding here
    rng = np.random.default_rng(2)
    bank = _features(rng, 400, dim=64, offset=12.0)
    queries = bank[rng.integers(400, size=30)] + rng.normal(scale=1e-4, size=(30, 64)).astype(np.float32)
    for k in (1, 2):
        _assert_same(ExactIndex(bank, block_rows=37).search(queries, k), brute_force_neighbours(queries, bank, k))


def test_squared_distances_do_not_depend_on_how_many_pairs_are_computed():
    rng = np.random.default_rng(3)
    a, b = _features(rng, 50, dim=64), _features(rng, 50, dim=64)
    together = squared_distances(a, b)
    assert all(squared_distances(a[i : i + 1], b[i : i + 1])[0] == together[i] for i in range(50))


def test_the_search_checks_its_arguments():
    bank = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="k must be between 1 and the bank's 3 rows"):
        ExactIndex(bank).search(bank, 4)
    with pytest.raises(ValueError, match="queries have 2 dimensions, the bank 4"):
        ExactIndex(bank).search(np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="finite"):
        ExactIndex(np.full((2, 4), np.nan, np.float32))
    assert ExactIndex(bank).search(np.zeros((0, 4), np.float32)).indices.shape == (0, 1)


def test_the_approximate_index_is_exact_when_it_scans_every_cell():
    pytest.importorskip("faiss")
    from picard_ad.methods.patchsvdd.faiss_index import ApproximateIndex

    rng = np.random.default_rng(4)
    bank, queries = _features(rng, 2000, dim=16), _features(rng, 50, dim=16)
    truth = brute_force_neighbours(queries, bank, 3)
    everything = ApproximateIndex(bank, n_lists=16, n_probes=16, seed=0)
    _assert_same(everything.search(queries, 3), truth)
    few = ApproximateIndex(bank, n_lists=16, n_probes=1, seed=0)
    found = few.search(queries, 3)
    assert (few.n_lists, few.n_probes) == (16, 1)
    assert np.array_equal(found.distances[:, 0], np.sqrt(squared_distances(queries, bank[found.indices[:, 0]])))
    assert (found.distances >= truth.distances).all() and (np.diff(found.distances, axis=1) >= 0).all()
    assert np.array_equal(found.indices, few.search(queries, 3).indices)  # seeded: reproducible
    assert ApproximateIndex(bank[:100], n_lists=1024, n_probes=8).n_lists == 2  # at least 39 rows per cell


def test_a_missing_faiss_names_the_package(monkeypatch):
    from picard_ad.methods.patchsvdd.faiss_index import ApproximateIndex

    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(MissingDependencyError, match="needs the package 'faiss-cpu': pip install faiss-cpu"):
        ApproximateIndex(np.zeros((100, 4), np.float32), n_lists=2, n_probes=1)
