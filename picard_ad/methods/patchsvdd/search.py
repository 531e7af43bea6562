"""Exact k-nearest-neighbour search of feature vectors by blocked matrix products: equal to brute force.

Patch SVDD scores a patch by the distance of its feature to the nearest features of normal patches (Yi and Yoon
2020, Eq. 6); brute force over every training feature made it take 4.13 s per window in Konz et al. 2023 (Table 2).
Here the squared distances ``||a||^2 + ||b||^2 - 2 a.b`` of a block of bank rows are one float32 matrix product
(memory: queries x block rows x 4 bytes), which is fast but not exact: when a distance is small next to the norms,
the terms cancel and rounding dominates. So the products only select candidates: every bank row whose approximate
distance lies within a rigorous rounding bound of the k-th smallest. The candidates' distances are recomputed from
their coordinate differences in float64 (``squared_distances``), the formula ``brute_force_neighbours`` applies to
every pair, and the k smallest, ties broken by the lower bank row, are therefore exactly brute force's.

Both sides are centred on the bank's mean first: distances stay the same, the norms shrink, and with them the
rounding bound and the number of candidates. bf16 is not offered for the products: its 8-bit mantissa would make the
bound cover much of the bank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BLOCK_BYTES = 4 * 2**20  # float32 distances of one block (queries x block rows): fits the caches
SAFETY = 2.0  # on the rounding bound, which is first-order (and covers the rounding of the bound itself)


@dataclass(frozen=True, eq=False)
class Neighbours:
    """The k nearest bank rows of each query: distances (M, k) float64 L2 distances in feature units, ascending;
    indices (M, k) int64 bank rows (the lower row first among equal distances)."""

    distances: np.ndarray
    indices: np.ndarray


def squared_distances(queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Squared L2 distances of paired rows, the defining formula: queries (C, D), rows (C, D) float32 -> (C,)
    float64.

    Differences and squares of float32 values are exact in float64; only the sum over D rounds, and it runs in
    the fixed order 0..D-1 for every pair (numpy's own reductions change order with the array's shape), so brute
    force and the blocked search agree to the bit.
    """
    difference = queries.astype(np.float64) - rows.astype(np.float64)
    squares = difference * difference
    total = squares[:, 0].copy()
    for column in squares.T[1:]:
        total += column
    return total


def brute_force_neighbours(queries: np.ndarray, bank: np.ndarray, k: int) -> Neighbours:
    """The definition: ``squared_distances`` of every (query, bank row) pair, stably sorted. Slow; for tests and
    timings. queries (M, D), bank (N, D) float32, k <= N."""
    queries, bank = as_features(queries), as_features(bank)
    check_search(queries, bank, k)
    distances = np.empty((len(queries), k))
    indices = np.empty((len(queries), k), dtype=np.int64)
    for i, query in enumerate(queries):
        squared = squared_distances(np.broadcast_to(query, bank.shape), bank)
        order = np.argsort(squared, kind="stable")[:k]
        distances[i], indices[i] = np.sqrt(squared[order]), order
    return Neighbours(distances, indices)


class ExactIndex:
    """Exact k-NN over a bank of features, searched a memory-bounded block of rows at a time.

    Args:
        bank: (N, D) float32 features (kept, not copied, on the CPU).
        device: where the matrix products run.
        block_rows: bank rows per block; None: as many as keep a block's distances under ``BLOCK_BYTES``.
    """

    def __init__(self, bank: np.ndarray, *, device: torch.device | str = "cpu", block_rows: int | None = None):
        self.bank = as_features(bank)
        if len(self.bank) == 0:
            raise ValueError("the feature bank is empty")
        if block_rows is not None and block_rows < 1:
            raise ValueError(f"block_rows must be at least 1, got {block_rows}")
        self.device = torch.device(device)
        self.block_rows = block_rows
        # torch shares the numpy memory on the CPU: the bank is held once
        self._bank = torch.from_numpy(self.bank).to(self.device)
        self._mean = self._bank.double().mean(dim=0).float()
        centred_norms = torch.cat([self._centred(start, start + 2**16).square().sum(dim=1)
                                   for start in range(0, len(self.bank), 2**16)])  # fmt: skip
        self._squared_norms = centred_norms
        self._max_norm = float(centred_norms.max().sqrt())
        dim = self.bank.shape[1] + 4  # D products and sums, two additions, the two centrings
        unit = _unit_roundoff(self.device)
        self._gamma = SAFETY * dim * unit / (1 - dim * unit)

    def _centred(self, start: int, stop: int) -> torch.Tensor:
        return self._bank[start:stop] - self._mean

    def search(self, queries: np.ndarray | torch.Tensor, k: int = 1) -> Neighbours:
        """The k nearest bank rows of each query (M, D) float32, exactly as ``brute_force_neighbours``."""
        queries_np = as_features(queries.detach().cpu().numpy() if torch.is_tensor(queries) else queries)
        check_search(queries_np, self.bank, k)
        n_queries, n_rows = len(queries_np), len(self.bank)
        best_d = np.full((n_queries, k), np.inf)
        best_j = np.full((n_queries, k), n_rows, dtype=np.int64)
        if n_queries == 0:
            return Neighbours(best_d, best_j)
        query = torch.from_numpy(queries_np).to(self.device) - self._mean
        query_norms = query.square().sum(dim=1)
        # |computed - true squared distance| <= gamma (|a| + |b|)^2 for centred a, b; twice it separates a row
        # that may be among the k nearest from the k-th smallest computed distance
        margin = 2 * self._gamma * (query_norms.double().sqrt() + self._max_norm).square()
        # The computed distances leave out ||a||^2, the same for all rows of a query: the order and the gaps stay,
        # and a pass over every block is saved.
        running = torch.full((n_queries, k), torch.inf, device=self.device)  # k smallest computed, per query
        infinity = torch.tensor(torch.inf, device=self.device)
        rows = self.block_rows or max(k, BLOCK_BYTES // (4 * n_queries))
        for start in range(0, n_rows, rows):
            stop = min(start + rows, n_rows)
            computed = torch.addmm(self._squared_norms[start:stop][None], query, self._centred(start, stop).T,
                                   alpha=-2.0)  # fmt: skip
            if k == 1:  # a minimum is twice as fast as topk
                smallest = computed.amin(dim=1, keepdim=True)
            else:
                smallest = computed.topk(min(k, stop - start), dim=1, largest=False).values
            running = torch.cat([running, smallest], dim=1).topk(k, dim=1, largest=False).values
            # rounded up into float32, so the cast never drops a candidate
            threshold = torch.nextafter((running[:, -1].double() + margin).float(), infinity)
            # most blocks hold no candidate of most queries: only the others are compared row by row
            active = (smallest.amin(dim=1) <= threshold).nonzero()[:, 0]
            if len(active) == 0:
                continue
            hit, hit_row = (computed[active] <= threshold[active, None]).nonzero(as_tuple=True)
            hit_query, hit_row = active[hit].cpu().numpy(), hit_row.cpu().numpy() + start
            exact = squared_distances(queries_np[hit_query], self.bank[hit_row])
            best_d, best_j = _merge(best_d, best_j, hit_query, exact, hit_row)
        return Neighbours(np.sqrt(best_d), best_j)


def _merge(
    best_d: np.ndarray, best_j: np.ndarray, query: np.ndarray, squared: np.ndarray, row: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest (squared distance, row) per query among the running best (M, k) and new candidates (C,)."""
    n_queries, k = best_d.shape
    all_query = np.concatenate([np.repeat(np.arange(n_queries), k), query])
    all_d = np.concatenate([best_d.ravel(), squared])
    all_j = np.concatenate([best_j.ravel(), row])
    order = np.lexsort((all_j, all_d, all_query))
    sorted_query = all_query[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_query, sorted_query, side="left")
    keep = rank < k  # every query has its k running entries, so each fills its k slots
    merged_d, merged_j = np.empty_like(best_d), np.empty_like(best_j)
    merged_d[sorted_query[keep], rank[keep]] = all_d[order][keep]
    merged_j[sorted_query[keep], rank[keep]] = all_j[order][keep]
    return merged_d, merged_j


def _unit_roundoff(device: torch.device) -> float:
    """Unit roundoff of a float32 matrix product on ``device``: float32's, unless torch was allowed a faster,
    lower-precision mode (TF32 or bf16 passes), whose worst case, bf16's, is then assumed."""
    reduced = torch.get_float32_matmul_precision() != "highest"
    if device.type == "cuda":
        reduced = reduced or torch.backends.cuda.matmul.allow_tf32
    return 2.0**-8 if reduced else 2.0**-24


def as_features(values: np.ndarray) -> np.ndarray:
    """Features as a C-contiguous (N, D) float32 array; ValueError unless 2-D and finite."""
    features = np.ascontiguousarray(values, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"features are (N, D) arrays, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features must be finite")
    return features


def check_search(queries: np.ndarray, bank: np.ndarray, k: int) -> None:
    """ValueError unless queries (M, D) and bank (N, D) share D and 1 <= k <= N."""
    if queries.shape[1] != bank.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} dimensions, the bank {bank.shape[1]}")
    if not 1 <= k <= len(bank):
        raise ValueError(f"k must be between 1 and the bank's {len(bank)} rows, got {k}")
