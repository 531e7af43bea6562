"""CutPaste's projection head g and 3-way classifier: what the encoder's embedding is trained through.

Li et al. 2021 put an MLP projection head on the pooled encoder output and a linear classifier on the head, trained
with cross-entropy to tell normal patches from cut-paste and scar patches ("CutPaste 3-Way"); the head is dropped
after training (the density estimator sees the encoder's embedding). The head's shape follows their code base
(deep_representation_one_class): hidden layers as wide as the embedding, each linear -> batch norm -> ReLU, then a
linear layer to a 128-d projection. Their head has 8 hidden layers; ``hidden_layers`` scales it down for demos.
"""

from __future__ import annotations

import torch
from torch import nn

N_CLASSES = 3  # normal, cut-paste, cut-paste scar


class ProjectionHead(nn.Module):
    """Embeddings (N, D) -> 3-way class logits (N, 3) through an MLP projection (N, projection_dim).

    Args:
        embedding_dim: D, the encoder's embedding size (also the width of the hidden layers).
        hidden_layers: linear -> batch norm -> ReLU layers before the projection.
        projection_dim: size of the projection the linear classifier reads.
    """

    def __init__(self, embedding_dim: int, hidden_layers: int = 8, projection_dim: int = 128):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(hidden_layers):
            # no bias: the batch norm right after it has its own
            layers += [nn.Linear(embedding_dim, embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim), nn.ReLU()]
        layers.append(nn.Linear(embedding_dim, projection_dim))
        self.projection = nn.Sequential(*layers)
        self.classifier = nn.Linear(projection_dim, N_CLASSES)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.projection(embeddings))
