"""A Gaussian mixture fitted by EM, differentiable in its input: CRADL's density of normal representations.

``fit_mixture`` runs EM (Dempster et al. 1977) in float64 on the CPU, with full (the default, scikit-learn's) or
diagonal covariances and ``reg_covar`` added to every variance (scikit-learn's 1e-6). Initialisation: K distinct
samples drawn as centres, ten k-means (Lloyd) iterations, and the hard assignments as the first
responsibilities; EM stops when the mean log-likelihood per sample changes by less than ``tol`` nats (the thesis:
0.1) or after ``max_iter`` iterations. ``select_mixture`` fits K in (1, 2, 4, 8) (those with at most as many
components as samples) and keeps the one whose mean log-likelihood of held-out normal samples is highest: no
labels take part.

``GaussianMixture.log_likelihood`` is written in torch so that its gradient with respect to the samples (and
through them the image) comes from autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

Covariance = Literal["full", "diag"]
KMEANS_ITERATIONS = 10


@dataclass(frozen=True)
class GaussianMixture:
    """Mixture parameters, float64: weights (K,), means (K, D), covariances (K, D, D) (full) or (K, D) (diag)."""

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor

    @property
    def covariance(self) -> Covariance:
        return "full" if self.covariances.dim() == 3 else "diag"

    @property
    def n_components(self) -> int:
        return len(self.weights)

    def component_log_densities(self, x: torch.Tensor) -> torch.Tensor:
        """log (w_k N(x; mu_k, Sigma_k)) of every sample and component: x (N, D) -> (N, K), float64."""
        x = x.to(torch.float64)
        centred = x[:, None, :] - self.means[None]  # (N, K, D)
        dims = x.shape[1]
        if self.covariance == "full":
            cholesky = torch.linalg.cholesky(self.covariances)  # (K, D, D)
            solved = torch.linalg.solve_triangular(cholesky[None], centred[..., None], upper=False)[..., 0]
            mahalanobis = solved.square().sum(-1)
            half_log_det = cholesky.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        else:
            mahalanobis = (centred.square() / self.covariances[None]).sum(-1)
            half_log_det = 0.5 * self.covariances.log().sum(-1)
        return self.weights.log()[None] - 0.5 * (dims * math.log(2 * math.pi) + mahalanobis) - half_log_det[None]

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of every sample: x (N, D) -> (N,) float64 nats; differentiable in x."""
        return torch.logsumexp(self.component_log_densities(x), dim=1)

    def state(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights, "means": self.means, "covariances": self.covariances}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> GaussianMixture:
        return cls(*(state[name].to(torch.float64) for name in ("weights", "means", "covariances")))


def _m_step(x: torch.Tensor, responsibilities: torch.Tensor, covariance: Covariance,
            reg_covar: float) -> GaussianMixture:  # fmt: skip
    counts = responsibilities.sum(0) + 10 * torch.finfo(torch.float64).eps  # (K,)
    means = responsibilities.T @ x / counts[:, None]
    centred = x[None] - means[:, None]  # (K, N, D)
    weighted = responsibilities.T[..., None] * centred
    if covariance == "full":
        covariances = weighted.transpose(1, 2) @ centred / counts[:, None, None]
        covariances = covariances + reg_covar * torch.eye(x.shape[1], dtype=x.dtype)
    else:
        covariances = (weighted * centred).sum(1) / counts[:, None] + reg_covar
    return GaussianMixture(counts / len(x), means, covariances)


def _kmeans_assignments(x: torch.Tensor, k: int, rng: np.random.Generator) -> torch.Tensor:
    centres = x[torch.from_numpy(rng.choice(len(x), size=k, replace=False))]
    for _ in range(KMEANS_ITERATIONS):
        labels = torch.cdist(x, centres).argmin(1)
        centres = torch.stack([x[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(k)])
    return torch.cdist(x, centres).argmin(1)


def fit_mixture(x: torch.Tensor | np.ndarray, k: int, covariance: Covariance = "full", *, reg_covar: float = 1e-6,
                tol: float = 0.1, max_iter: int = 100, seed: int = 0) -> GaussianMixture:  # fmt: skip
    """Fit a K-component mixture to samples x (N, D) by EM (see the module docstring); N >= K."""
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if not 1 <= k <= len(x):
        raise ValueError(f"a mixture of {k} components needs at least {k} samples, got {len(x)}")
    labels = _kmeans_assignments(x, k, np.random.default_rng(seed))
    mixture = _m_step(x, torch.nn.functional.one_hot(labels, k).to(torch.float64), covariance, reg_covar)
    previous = -math.inf
    for _ in range(max_iter):
        log_densities = mixture.component_log_densities(x)
        log_likelihood = torch.logsumexp(log_densities, dim=1)
        mean = float(log_likelihood.mean())
        if abs(mean - previous) < tol:
            break
        previous = mean
        mixture = _m_step(x, (log_densities - log_likelihood[:, None]).exp(), covariance, reg_covar)
    return mixture


@dataclass(frozen=True)
class MixtureSelection:
    """The chosen mixture and the mean held-out log-likelihood (nats per sample) of every K tried."""

    mixture: GaussianMixture
    held_out_log_likelihood: dict[int, float]


def select_mixture(train: torch.Tensor, held_out: torch.Tensor, components: tuple[int, ...] = (1, 2, 4, 8),
                   covariance: Covariance = "full", **options) -> MixtureSelection:  # fmt: skip
    """Fit a mixture for each K in ``components`` (at most len(train)) on ``train`` (N, D) and keep the one of the
    highest mean log-likelihood of ``held_out`` (M, D) normal samples; ``options`` go to ``fit_mixture``."""
    scores, fitted = {}, {}
    for k in components:
        if k > len(train):
            continue
        fitted[k] = fit_mixture(train, k, covariance, **options)
        scores[k] = float(fitted[k].log_likelihood(torch.as_tensor(held_out)).mean())
    if not fitted:
        raise ValueError(f"no mixture of {components} components fits {len(train)} samples")
    best = max(scores, key=lambda k: (scores[k], -k))
    return MixtureSelection(fitted[best], scores)
