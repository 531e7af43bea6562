"""CutPaste's training step for the generic ``picard_ad.training.Trainer``: the 3-way self-supervised classifier.

Each iteration draws ``batch_size`` tissue patches (``PatchSampler`` with ``min_tissue_fraction``: no blank
patches), makes each into three views (normal, cut-paste, scar; ``augment.three_way``, nothing cut from or pasted
into blank regions), and takes one optimiser step (SGD as Li et al. 2021, or Adam: see ``config``) on the
cross-entropy of the 3-way classifier (encoder f, projection head g, linear classifier). The learning rate
follows one cosine from ``lr`` to 0 over ``steps``, computed from the iteration number, so a resumed run
continues it exactly (no scheduler state). The validation metric is the 3-way cross-entropy (nats) on a fixed
held-out set of patches, their views drawn once from the seed; the sample grid shows the views of the first of
them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from picard_ad.data.patches import ImageEntry, PatchSampler
from picard_ad.errors import InputError
from picard_ad.methods.cutpaste.augment import CLASS_NAMES, three_way
from picard_ad.methods.cutpaste.config import CutPasteTrainConfig
from picard_ad.methods.cutpaste.encoder import INTENSITY_NORMALISATION, ResNet18Encoder
from picard_ad.methods.cutpaste.head import ProjectionHead
from picard_ad.training import distributed
from picard_ad.training.distributed import DistributedContext
from picard_ad.training.logging import side_by_side
from picard_ad.training.step import CurvePanel, SampleGrid, TrainingStep

GRID_SAMPLES = 6
MAX_REJECTED_PATCHES = 200
"""Patches in a row without room on tissue for a cut-paste and a scar before the run stops with advice."""
# streams of the samplers and augmentations, derived from config.seed
_TRAIN_STREAM, _VALIDATION_STREAM = 0, 1_000_000
_AUGMENT, _VALIDATION_AUGMENT = 7, 8


def build_networks(config: CutPasteTrainConfig) -> dict[str, nn.Module]:
    """Freshly initialised encoder f and projection head g (with the 3-way classifier), by their checkpoint names."""
    encoder = ResNet18Encoder(width=config.width)
    head = ProjectionHead(encoder.embedding_dim, config.head_layers, config.projection_dim)
    return {"encoder": encoder, "head": head}


def architecture_facts(config: CutPasteTrainConfig) -> dict[str, Any]:
    """What a checkpoint's ``config.json`` says about the networks (read by ``picard-ad describe``)."""
    return {
        "architecture": "cutpaste-resnet18",
        "in_channels": 1,
        "width": config.width,
        "embedding_dim": config.width * 8,
        "head_layers": config.head_layers,
        "projection_dim": config.projection_dim,
        "patch_size": config.patch_size,
        "intensity_normalisation": INTENSITY_NORMALISATION,
    }


def cosine_lr(config: CutPasteTrainConfig, iteration: int) -> float:
    """Learning rate of 1-based ``iteration``: ``lr`` decayed along half a cosine to 0 at ``steps``."""
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * (iteration - 1) / config.steps))


class CutPasteTraining(TrainingStep):
    """Encoder and head trained to tell normal patches from cut-paste and scar ones."""

    loss_names = ("loss", "error")
    validation_name = "val_loss"
    curve_panels = (
        CurvePanel("3-way classification", (("loss", "cross-entropy (train)"),), log_scale=True, with_validation=True),
        CurvePanel("training error", (("error", "fraction misclassified (train)"),)),
    )

    def __init__(self, config: CutPasteTrainConfig, device: torch.device, context: DistributedContext):
        super().__init__(config, device, context)
        self.networks = build_networks(config)
        parameters = [p for network in self.networks.values() for p in network.parameters()]
        if config.optimizer == "sgd":
            optimizer = torch.optim.SGD(parameters, config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay)  # fmt: skip
        else:
            optimizer = torch.optim.Adam(parameters, config.lr, weight_decay=config.weight_decay)
        self.optimizers = {config.optimizer: optimizer}
        self.augmentation = config.augmentation()

    def prepare_data(self, train_images: Sequence[ImageEntry], val_images: Sequence[ImageEntry], source: Path) -> None:
        config = self.config
        self.source = source
        self.augment_rng = np.random.default_rng((config.seed, _AUGMENT, self.context.rank))
        self.sampler = self._sampler(train_images, _TRAIN_STREAM + self.context.rank, config.num_workers)
        validation = self._sampler(val_images, _VALIDATION_STREAM, 0)
        try:
            rng = np.random.default_rng((config.seed, _VALIDATION_AUGMENT))
            views, labels = self.draw_views(validation, config.val_patches, rng)
        finally:
            validation.close()
        self.validation_views, self.validation_labels = torch.from_numpy(views), torch.from_numpy(labels)

    def _sampler(self, images: Sequence[ImageEntry], stream: int, num_workers: int) -> PatchSampler:
        config = self.config
        return PatchSampler(
            list(images),
            config.patch_size,
            seed=config.seed,
            stream=stream,
            tissue_threshold=config.tissue_threshold,
            min_tissue_fraction=config.min_tissue_fraction,
            flips=config.flips,
            pool_size=config.image_pool_size,
            patches_per_visit=config.patches_per_visit,
            num_workers=num_workers,
            source=self.source,
        )

    def draw_views(self, sampler: PatchSampler, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Three views of each of ``n`` patches: ((3n, P, P) float32 in [0, 1], (3n,) int64 classes), patch-major.

        A patch whose tissue has no room for a cut-paste or a scar is replaced by the next one.
        """
        views, labels, rejected = [], [], 0
        while len(views) < n:
            made = three_way(sampler.sample(1)[0], rng, self.augmentation)
            if made is None:
                rejected += 1
                if rejected > MAX_REJECTED_PATCHES:
                    raise InputError(
                        self.source,
                        f"{MAX_REJECTED_PATCHES} patches in a row had no room on tissue for both a cut-paste and a "
                        "scar; raise min_tissue_fraction or lower area_ratio",
                    )
                continue
            rejected = 0
            views.append(made[0])
            labels.append(made[1])
        return np.concatenate(views), np.concatenate(labels)

    # -- one iteration -------------------------------------------------------------------------------------------

    def logits(self, views: torch.Tensor) -> torch.Tensor:
        """3-way logits (N, 3) float32 of views (N, P, P) in [0, 1] (moved to the device here)."""
        with self.autocast():
            embeddings = self.networks["encoder"](self.to_device(views[:, None]))
            return self.networks["head"](embeddings).float()

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        views, labels = self.draw_views(self.sampler, self.config.batch_size, self.augment_rng)
        targets = torch.from_numpy(labels).to(self.device)
        optimizer = self.optimizers[self.config.optimizer]
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(self.config, iteration)
        logits = self.logits(torch.from_numpy(views))
        loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for network in self.networks.values():
            distributed.average_gradients(network, self.context)
        optimizer.step()
        error = (logits.detach().argmax(dim=1) != targets).float().mean()
        return {"loss": loss.detach(), "error": error}

    # -- validation and samples ----------------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> float:
        """Held-out 3-way cross-entropy in nats (ln 3 = 1.10 is chance), networks in eval mode."""
        for network in self.networks.values():
            network.eval()
        try:
            chunk = 3 * self.config.batch_size
            logits = torch.cat([self.logits(self.validation_views[start : start + chunk]).cpu()
                                for start in range(0, len(self.validation_views), chunk)])  # fmt: skip
        finally:
            for network in self.networks.values():
                network.train()
        return float(F.cross_entropy(logits, self.validation_labels))

    def sample_grid(self) -> SampleGrid:
        """Normal, cut-paste and scar views of the first held-out patches."""
        views = self.validation_views[: 3 * GRID_SAMPLES].numpy()
        return SampleGrid(side_by_side(views[0::3], views[1::3], views[2::3]), CLASS_NAMES)

    # -- state ---------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"augment": self.augment_rng.bit_generator.state, "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.augment_rng.bit_generator.state = state["augment"]
        self.sampler.load_state_dict(state["sampler"])

    def describe(self) -> dict[str, Any]:
        return architecture_facts(self.config)

    @property
    def excluded_images(self) -> list[Path]:
        return self.sampler.excluded_images

    def close(self) -> None:
        self.sampler.close()
