"""Approximate k-nearest-neighbour search with faiss (an optional package, imported when first needed).

The reference code of Yi and Yoon (2020) searched its large 32 px bank with NGT, a graph index, because brute force
was too slow. Here the maintained alternative is faiss's inverted file (``IndexIVFFlat``): k-means splits the bank
into ``n_lists`` cells, and a query scans only the rows of its ``n_probes`` nearest cells, so a true neighbour in
another cell can be missed. The k-means is seeded, so an index and its answers are reproducible. Found neighbours
get exact distances (``search.squared_distances``): only which rows are found is approximate.
"""

from __future__ import annotations

import numpy as np

from picard_ad.errors import MissingDependencyError
from picard_ad.methods.patchsvdd.search import Neighbours, as_features, check_search, squared_distances

MIN_ROWS_PER_LIST = 39  # faiss's k-means wants at least this many training points per centroid


def import_faiss():
    """The faiss module, or MissingDependencyError naming the package to install."""
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError("faiss-cpu", "PatchSVDD's approximate search (search: approximate)") from None
    return faiss


class ApproximateIndex:
    """faiss IVF-Flat over a bank of features.

    Args:
        bank: (N, D) float32 features (kept, for the exact distances of the rows found).
        n_lists: k-means cells, at most N / 39 (fewer rows per cell would leave k-means poorly trained).
        n_probes: cells scanned per query (at most ``n_lists``; equal to it, the search is exhaustive).
        seed: of the k-means initialisation and its training sample.
    """

    def __init__(self, bank: np.ndarray, *, n_lists: int, n_probes: int, seed: int = 0):
        faiss = import_faiss()
        self.bank = as_features(bank)
        self.n_lists = max(1, min(n_lists, len(self.bank) // MIN_ROWS_PER_LIST))
        self.n_probes = min(n_probes, self.n_lists)
        dimensions = self.bank.shape[1]
        self.index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dimensions), dimensions, self.n_lists)
        self.index.cp.seed = seed
        self.index.train(self.bank)
        self.index.add(self.bank)
        self.index.nprobe = self.n_probes

    def search(self, queries: np.ndarray, k: int = 1) -> Neighbours:
        """The k nearest rows found for each query (M, D) float32: exact distances, ascending (lower row first on
        ties); queries whose probed cells hold fewer than k rows are searched exhaustively."""
        queries = as_features(queries)
        check_search(queries, self.bank, k)
        if len(queries) == 0:
            return Neighbours(np.zeros((0, k)), np.zeros((0, k), dtype=np.int64))
        _, rows = self.index.search(queries, k)
        short = np.flatnonzero((rows < 0).any(axis=1))
        if len(short):
            self.index.nprobe = self.n_lists
            try:
                rows[short] = self.index.search(queries[short], k)[1]
            finally:
                self.index.nprobe = self.n_probes
        squared = squared_distances(np.repeat(queries, k, axis=0), self.bank[rows.ravel()]).reshape(rows.shape)
        order = np.lexsort((rows, squared), axis=1)
        return Neighbours(np.sqrt(np.take_along_axis(squared, order, 1)), np.take_along_axis(rows, order, 1))
