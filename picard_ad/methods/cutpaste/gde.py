"""Gaussian density estimators (GDE) of window embeddings and the Mahalanobis distance that scores a window.

Li et al. 2021 and the PICARD paper (appendix C) fit a Gaussian to the embeddings of normal windows,
``log p(x) ∝ -1/2 (f(x) - μ)ᵀ Σ⁻¹ (f(x) - μ)``, and score a window by how unlikely its embedding is. The score here
is the Mahalanobis distance ``sqrt((f(x) - μ)ᵀ Σ⁻¹ (f(x) - μ))``, a monotone function of that log density (the
PyTorch reimplementations of CutPaste use the same). Σ is the Ledoit-Wolf shrunk covariance (Ledoit and Wolf
2004), as Li et al. fit it with scikit-learn: with embeddings of 512 values and a few hundred windows per
location, the sample covariance is singular, and shrinking it towards a multiple of the identity makes it
invertible with the smallest expected error. ``ledoit_wolf`` reimplements scikit-learn's estimator
(``sklearn.covariance.ledoit_wolf``, not a run-time dependency), and the tests hold it against scikit-learn.

A ``GaussianDensity`` holds L Gaussians of D-dimensional embeddings: L = 1 for one Gaussian shared by all window
locations, L = grid size for one per window location. Parameters are kept in float32 (as saved), distances are
computed in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import pinvh

MIN_SAMPLES = 2
"""Embeddings a Gaussian needs: one sample has no spread."""
ROW_BLOCK = 65_536
"""Samples summed at once in float64 by ``ledoit_wolf``."""


def ledoit_wolf(embeddings: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of samples, as ``sklearn.covariance.ledoit_wolf(x)`` computes it.

    The empirical covariance S (divided by n) is shrunk towards μ I, μ = trace(S) / D:
    ``(1 - s) S + s μ I`` with the shrinkage s in [0, 1] that minimises the expected squared error. The sums run
    over blocks of rows in float64, so memory beyond the samples stays O(D²) for millions of windows.

    Args:
        embeddings: (n, D) samples, n >= 2, any float dtype.

    Returns:
        ((D, D) float64 shrunk covariance, shrinkage s).
    """
    x = np.asarray(embeddings)
    if x.ndim != 2 or len(x) < MIN_SAMPLES:
        raise ValueError(f"ledoit_wolf needs (n, D) samples with n >= {MIN_SAMPLES}, got shape {x.shape}")
    n, dims = x.shape
    mean = x.mean(axis=0, dtype=np.float64)
    gram = np.zeros((dims, dims))  # sum over samples of x_c x_cᵀ (x_c: centred)
    fourth = 0.0  # sum over samples and i, j of x_ci² x_cj²
    for start in range(0, n, ROW_BLOCK):
        centred = x[start : start + ROW_BLOCK].astype(np.float64) - mean
        gram += centred.T @ centred
        squares = (centred**2).sum(axis=1)
        fourth += float(squares @ squares)
    empirical = gram / n
    if dims == 1:  # one feature: shrinking towards its own variance changes nothing
        return empirical, 0.0
    mu = np.trace(empirical) / dims
    delta_sum = float((empirical**2).sum())  # squared entries of S
    beta = (fourth / n - delta_sum) / (dims * n)
    delta = (delta_sum - 2.0 * mu * np.trace(empirical) + dims * mu**2) / dims
    beta = min(beta, delta)  # never shrink past the target
    shrinkage = 0.0 if beta == 0 else beta / delta
    covariance = (1.0 - shrinkage) * empirical
    covariance.flat[:: dims + 1] += shrinkage * mu
    return covariance, float(shrinkage)


@dataclass(frozen=True, eq=False)
class GaussianDensity:
    """L Gaussians of D-dimensional embeddings; location l's is (mean[l], covariance[l]).

    mean: (L, D) float32; covariance: (L, D, D) float32, Ledoit-Wolf shrunk; precision: (L, D, D) float32, its
    (pseudo-)inverse; shrinkage: (L,) float32 in [0, 1]; count: (L,) int64, the embeddings each was fitted on
    (0 where a location had too few and holds the ``fallback`` Gaussian it was fitted with).
    """

    mean: np.ndarray
    covariance: np.ndarray
    precision: np.ndarray
    shrinkage: np.ndarray
    count: np.ndarray

    def __post_init__(self) -> None:
        locations, dims = self.mean.shape
        shapes = {"covariance": (locations, dims, dims), "precision": (locations, dims, dims),
                  "shrinkage": (locations,), "count": (locations,)}  # fmt: skip
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"GaussianDensity {name} has shape {getattr(self, name).shape}, expected {shape}")

    @property
    def n_locations(self) -> int:
        return self.mean.shape[0]

    @property
    def dims(self) -> int:
        return self.mean.shape[1]

    @classmethod
    def fit(cls, groups: Sequence[np.ndarray], fallback: GaussianDensity | None = None) -> GaussianDensity:
        """One Gaussian per group of embeddings: mean, Ledoit-Wolf covariance and its inverse.

        groups: per location, (n_l, D) embeddings. A group with fewer than ``MIN_SAMPLES`` takes ``fallback``'s
            (single) Gaussian and count 0; without a fallback that is an error.
        """
        dims = next((np.shape(group)[1] for group in groups if np.ndim(group) == 2), None)
        if dims is None:
            raise ValueError("GaussianDensity.fit needs at least one (n, D) group of embeddings")
        means, covariances, precisions, shrinkages, counts = [], [], [], [], []
        for group in groups:
            group = np.asarray(group).reshape(-1, dims)  # float32 embeddings stay float32: sums run in float64
            if len(group) < MIN_SAMPLES:
                if fallback is None or fallback.n_locations != 1:
                    raise ValueError(f"a Gaussian needs at least {MIN_SAMPLES} embeddings, got {len(group)}, and "
                                     "no single fallback Gaussian was given")  # fmt: skip
                means.append(fallback.mean[0])
                covariances.append(fallback.covariance[0])
                precisions.append(fallback.precision[0])
                shrinkages.append(fallback.shrinkage[0])
                counts.append(0)
                continue
            covariance, shrinkage = ledoit_wolf(group)
            means.append(group.mean(axis=0, dtype=np.float64))
            covariances.append(covariance)
            # pinvh as scikit-learn's precision_: a symmetric inverse that stays defined if Σ is singular
            precisions.append(pinvh(covariance))
            shrinkages.append(shrinkage)
            counts.append(len(group))
        return cls(
            mean=np.asarray(means, dtype=np.float32),
            covariance=np.asarray(covariances, dtype=np.float32),
            precision=np.asarray(precisions, dtype=np.float32),
            shrinkage=np.asarray(shrinkages, dtype=np.float32),
            count=np.asarray(counts, dtype=np.int64),
        )

    def distance(self, embeddings: np.ndarray, locations: np.ndarray | None = None) -> np.ndarray:
        """Mahalanobis distances (K,) float64 of embeddings (K, D) to their location's Gaussian.

        locations: (K,) int location of each embedding; None for a shared Gaussian (L = 1).
        """
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dims:
            raise ValueError(f"expected (K, {self.dims}) embeddings, got shape {x.shape}")
        if locations is None:
            if self.n_locations != 1:
                raise ValueError(f"these {self.n_locations} Gaussians need the location of each embedding")
            diff = x - self.mean[0]
            squared = np.einsum("kd,kd->k", diff @ self.precision[0].astype(np.float64), diff)
        else:
            locations = np.asarray(locations, dtype=np.int64)
            if locations.shape != (len(x),):
                raise ValueError(f"expected {len(x)} locations, got shape {locations.shape}")
            squared = np.empty(len(x))
            # one window per location at a time: gathering (K, D, D) precisions would take K MB-sized copies
            for k, location in enumerate(locations):
                diff = x[k] - self.mean[location]
                squared[k] = diff @ self.precision[location].astype(np.float64) @ diff
        return np.sqrt(np.maximum(squared, 0.0))

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        """The arrays under ``prefix.NAME`` keys, for a safetensors file."""
        names = ("mean", "covariance", "precision", "shrinkage", "count")
        return {f"{prefix}.{name}": np.ascontiguousarray(getattr(self, name)) for name in names}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], prefix: str) -> GaussianDensity:
        """The density ``tensors`` wrote under ``prefix``; KeyError names a missing array."""
        return cls(**{name: tensors[f"{prefix}.{name}"] for name in ("mean", "covariance", "precision", "shrinkage",
                                                                     "count")})  # fmt: skip
