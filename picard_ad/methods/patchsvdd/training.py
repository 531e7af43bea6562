"""PatchSVDD's training step for the generic ``picard_ad.training.Trainer``: the reference's joint iteration.

Each iteration draws ``batch_size`` pairs for each of four tasks, relative position and SVDD' at patch sides K and
K/2 (the reference's ``pos_64``, ``pos_32``, ``svdd_64``, ``svdd_32`` at K = 64), encodes all K px patches in one
forward and all K/2 px patches in another, and takes one Adam step on
``L = sum over the two sides of (lambda * L_SVDD' + L_SSL)`` for the encoder and the two position classifiers
(one per side, as in the reference). The held-out metric is the same loss on a fixed set of pairs from the
validation images; the trainer keeps its lowest in ``RUN_DIR/best``. Scoring uses the encoder of ``RUN_DIR/last``
(the reference scores with its last epoch's encoder).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from picard_ad.data.patches import ImageEntry
from picard_ad.methods.patchsvdd.config import PatchSVDDTrainConfig
from picard_ad.methods.patchsvdd.losses import patch_svdd_loss, position_loss, svdd_loss
from picard_ad.methods.patchsvdd.networks import HierarchicalEncoder, PositionClassifier, encoder_macs
from picard_ad.methods.patchsvdd.pairs import POSITION_OFFSETS, PairSampler, PatchPairs
from picard_ad.training.distributed import DistributedContext, average_gradients
from picard_ad.training.logging import side_by_side
from picard_ad.training.step import CurvePanel, SampleGrid, TrainingStep

GRID_SAMPLES = 6
_TRAIN_STREAM, _VALIDATION_STREAM = 0, 1_000_000  # streams of the pair samplers, derived from config.seed
INTENSITY_NORMALISATION = "reader output in [0, 1] (picard_ad.io, normalization='auto'), then x * 2 - 1"


def build_networks(config: PatchSVDDTrainConfig) -> dict[str, nn.Module]:
    """Freshly initialised encoder and position classifiers (sides K and K/2), by their checkpoint names."""
    hidden = 4 * config.cnum
    return {
        "encoder": HierarchicalEncoder(config.patch_size, cnum=config.cnum, feature_dim=config.feature_dim),
        "position_classifier": PositionClassifier(config.feature_dim, hidden),
        "position_classifier_half": PositionClassifier(config.feature_dim, hidden),
    }


def architecture_facts(config: PatchSVDDTrainConfig) -> dict[str, Any]:
    """What a checkpoint's ``config.json`` says about the networks (read by ``picard-ad describe``)."""
    return {
        "architecture": "patchsvdd-hierarchical-encoder",
        "patch_size": config.patch_size,
        "cnum": config.cnum,
        "feature_dim": config.feature_dim,
        "encoder_macs_per_window": encoder_macs(config.patch_size, config.cnum, config.feature_dim),
        "intensity_normalisation": INTENSITY_NORMALISATION,
    }


class PatchSVDDTraining(TrainingStep):
    """The hierarchical encoder and two relative-position classifiers, one Adam, trained on tissue pairs."""

    loss_names = ("loss", "svdd", "svdd_half", "position", "position_half")
    validation_name = "val_loss"
    curve_panels = (
        CurvePanel("Patch SVDD objective", (("loss", "lambda * SVDD' + SSL, both sides (train)"),),
                   with_validation=True),
        CurvePanel("SVDD' (feature distance of adjacent patches)", (("svdd", "K px"), ("svdd_half", "K/2 px")),
                   log_scale=True),
        CurvePanel("relative-position cross-entropy", (("position", "K px"), ("position_half", "K/2 px"))),
    )  # fmt: skip

    def __init__(self, config: PatchSVDDTrainConfig, device: torch.device, context: DistributedContext):
        super().__init__(config, device, context)
        self.networks = build_networks(config)
        parameters = [p for network in self.networks.values() for p in network.parameters()]
        self.optimizers = {"adam": torch.optim.Adam(parameters, lr=config.lr)}
        self.sides = (config.patch_size, config.patch_size // 2)

    def prepare_data(self, train_images: Sequence[ImageEntry], val_images: Sequence[ImageEntry], source: Path) -> None:
        config = self.config
        self.sampler = self._sampler(train_images, _TRAIN_STREAM + self.context.rank, config.num_workers, source)
        validation = self._sampler(val_images, _VALIDATION_STREAM, 0, source)
        try:
            self.validation_pairs = self._draw(validation, config.val_pairs)
        finally:
            validation.close()

    def _sampler(self, images: Sequence[ImageEntry], stream: int, num_workers: int, source: Path) -> PairSampler:
        config = self.config
        return PairSampler(
            list(images), config.patch_size, seed=config.seed, stream=stream, tissue_threshold=config.tissue_threshold,
            min_tissue_fraction=config.min_tissue_fraction, noise_std=config.position_noise,
            pool_size=config.image_pool_size, patches_per_visit=config.patches_per_visit, num_workers=num_workers,
            source=source,
        )  # fmt: skip

    def _draw(self, sampler: PairSampler, n: int) -> dict[tuple[str, int], PatchPairs]:
        """``n`` pairs of every task and side: {(task, side): pairs}."""
        pairs = {}
        for side in self.sides:
            pairs["position", side] = sampler.position_pairs(n, side)
            pairs["svdd", side] = sampler.svdd_pairs(n, side)
        return pairs

    # -- one iteration -------------------------------------------------------------------------------------------

    def _encode(self, patches: list[np.ndarray]) -> list[torch.Tensor]:
        """Features (N, D) float32 of several (N, s, s) [0, 1] patch arrays of one side, in one forward."""
        batch = torch.from_numpy(np.concatenate(patches))[:, None] * 2 - 1
        with self.autocast():
            features = self.networks["encoder"](self.to_device(batch)).float()
        return list(features.split([len(p) for p in patches]))

    def losses(self, pairs: dict[tuple[str, int], PatchPairs]) -> dict[str, torch.Tensor]:
        """The loss terms of a draw of pairs (``loss_names``), with gradients."""
        terms: dict[str, torch.Tensor] = {}
        for side, suffix in zip(self.sides, ("", "_half")):
            position, svdd = pairs[("position", side)], pairs[("svdd", side)]
            first, second, svdd_first, svdd_second = self._encode([position.first, position.second, svdd.first,
                                                                   svdd.second])  # fmt: skip
            logits = self.networks[f"position_classifier{suffix}"](first, second)
            labels = torch.from_numpy(position.labels).to(self.device)
            terms[f"position{suffix}"] = position_loss(logits, labels)
            terms[f"svdd{suffix}"] = svdd_loss(svdd_first, svdd_second)
        lam = self.config.svdd_lambda
        terms["loss"] = patch_svdd_loss(terms["svdd"], terms["position"], lam) + patch_svdd_loss(
            terms["svdd_half"], terms["position_half"], lam
        )
        return terms

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        """One Adam step on a fresh draw of pairs; returns the detached loss terms."""
        terms = self.losses(self._draw(self.sampler, self.config.batch_size))
        optimizer = self.optimizers["adam"]
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        for network in self.networks.values():
            average_gradients(network, self.context)
        optimizer.step()
        return {name: value.detach() for name, value in terms.items()}

    # -- validation and samples ----------------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> float:
        """The training loss (lambda * SVDD' + SSL at both sides) on the fixed held-out pairs, in nats plus feature
        distance units (features in (-1, 1)^D)."""
        return float(self.losses(self.validation_pairs)["loss"])

    @torch.no_grad()
    def sample_grid(self) -> SampleGrid:
        """Relative-position examples at side K: centre patch, neighbour, where the neighbour is, where the
        classifier puts it (3 x 3 maps of the neighbour cells; brighter = more probable)."""
        pairs = self.validation_pairs[("position", self.sides[0])]
        first, second = (getattr(pairs, name)[:GRID_SAMPLES] for name in ("first", "second"))
        features = self._encode([first, second])
        probabilities = self.networks["position_classifier"](*features).softmax(dim=1).cpu().numpy()
        truth = np.eye(len(POSITION_OFFSETS))[pairs.labels[:GRID_SAMPLES]]
        side = first.shape[-1]
        image = side_by_side(first.clip(0, 1), second.clip(0, 1), _position_maps(truth, side),
                             _position_maps(probabilities, side))  # fmt: skip
        return SampleGrid(image, ("patch", "neighbour", "true position", "predicted position"))

    # -- state ---------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"pairs": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["pairs"])

    def describe(self) -> dict[str, Any]:
        return architecture_facts(self.config)

    @property
    def excluded_images(self) -> list[Path]:
        return self.sampler.excluded_images

    def close(self) -> None:
        self.sampler.close()


def _position_maps(values: np.ndarray, side: int) -> np.ndarray:
    """(N, side, side) pictures of (N, 8) values per neighbour cell: a 3 x 3 grid, the centre cell mid-grey."""
    cells = np.full((len(values), 3, 3), 0.5, dtype=np.float32)
    for label, (row, col) in enumerate(POSITION_OFFSETS):
        cells[:, row + 1, col + 1] = values[:, label]
    index = np.arange(side) * 3 // side
    return cells[:, index][:, :, index]
