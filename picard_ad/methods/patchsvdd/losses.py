"""The two losses of Patch SVDD (Yi and Yoon 2020, Eqs. 3-5): L = lambda * L_SVDD' + L_SSL.

SVDD' pulls the features of spatially adjacent patches together instead of pulling every feature to one centre
(Deep SVDD), which would collapse the features of the varied patches of an image; the self-supervised relative-
position task (SSL) keeps the features informative. The reference applies both at two patch sides and adds them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def svdd_loss(features: torch.Tensor, neighbour_features: torch.Tensor) -> torch.Tensor:
    """L_SVDD': mean L2 distance (not squared, as in the reference) between the features (N, D) of patches and of
    their moved copies (N, D)."""
    return torch.linalg.vector_norm(features - neighbour_features, dim=1).mean()


def position_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_SSL: cross-entropy of the relative-position classifier's logits (N, 8) against the labels (N,) int64."""
    return F.cross_entropy(logits, labels)


def patch_svdd_loss(svdd: torch.Tensor, position: torch.Tensor, svdd_lambda: float) -> torch.Tensor:
    """lambda * L_SVDD' + L_SSL of one scale's two terms (scalars); the scales' totals are added."""
    return svdd_lambda * svdd + position
