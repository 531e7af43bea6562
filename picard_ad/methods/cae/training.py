"""The CAE's training step for the generic ``picard_ad.training.Trainer``: masked reconstruction.

Each iteration draws ``batch_size`` prepared normal images with replacement (``data``), augments them, equalizes
them when ``equalization_order`` says after augmentation, pads them onto the square input and takes one Adam step
on the masked reconstruction loss (``scores.masked_mse``). The validation metric is the masked MSE of the held-out
normal images (``val_images``; the training images when none are held out), prepared and equalized as when
scoring, with the networks in eval mode; the trainer keeps the lowest in ``RUN_DIR/best``. The sample grid shows
input, reconstruction and error of the first held-out images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from picard_ad.config import to_dict
from picard_ad.data.patches import ImageEntry
from picard_ad.data.preprocessing import PreprocessingSettings, equalize_with
from picard_ad.errors import InputError
from picard_ad.methods.cae.config import CAETrainConfig
from picard_ad.methods.cae.data import TrainingImage, augment, load_training_images, to_canvas
from picard_ad.methods.cae.networks import ConvAutoencoder
from picard_ad.methods.cae.scores import masked_mse
from picard_ad.training import distributed
from picard_ad.training.distributed import DistributedContext
from picard_ad.training.logging import side_by_side
from picard_ad.training.step import CurvePanel, SampleGrid, TrainingStep

NETWORK = "autoencoder"
GRID_SAMPLES = 6
_AUGMENT = 7  # stream of the augmentation generator, derived from config.seed


def build_network(config: CAETrainConfig) -> ConvAutoencoder:
    """A freshly initialised autoencoder of the config's width and levels."""
    return ConvAutoencoder(width=config.width, levels=config.levels)


def architecture_facts(config: CAETrainConfig, preprocessing: PreprocessingSettings) -> dict[str, Any]:
    """What a checkpoint's ``config.json`` says about the network and the chain its images went through."""
    network = build_network(config)
    return {
        "architecture": "davletshina-cae",
        "in_channels": 1,
        "input_size": config.input_size,
        "width": config.width,
        "levels": config.levels,
        "bottleneck_shape": list(network.bottleneck_shape(config.input_size)),
        "preprocessing": to_dict(preprocessing),
    }


def augmented_batch(images: Sequence[TrainingImage], rng: np.random.Generator, n: int, config: Any,
                    preprocessing: PreprocessingSettings) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """n images drawn from ``images``, augmented (``config.augmentation``), equalized after augmentation when
    ``config.equalization_order`` says so, on the network's canvas: images and masks, (n, 1, S, S) each."""
    after = config.equalization_order == "after-augmentation"
    pairs = []
    for index in rng.integers(len(images), size=n):
        item = augment(images[index], rng, config.augmentation)
        if after:
            item = TrainingImage(equalize_with(item.image, item.mask, preprocessing), item.mask)
        pairs.append(to_canvas(item, config.input_size))
    return stack(pairs)


def stack(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 1, S, S) float32, masks (N, 1, S, S) 0/1 float32) of (image, mask) canvases."""
    images = torch.from_numpy(np.stack([image for image, _ in pairs]))[:, None]
    masks = torch.from_numpy(np.stack([mask for _, mask in pairs]).astype(np.float32))[:, None]
    return images, masks


class CAETraining(TrainingStep):
    """The autoencoder trained to reconstruct prepared normal images on their masks.

    preprocessing: the chain the images go through (the method's settings at fit time; defaults otherwise).
    """

    loss_names = ("loss",)
    validation_name = "val_mse"
    curve_panels = (
        CurvePanel("masked reconstruction", (("loss", "masked MSE (train)"),), log_scale=True, with_validation=True),
    )

    def __init__(self, config: CAETrainConfig, device: torch.device, context: DistributedContext,
                 preprocessing: PreprocessingSettings | None = None):  # fmt: skip
        super().__init__(config, device, context)
        self.preprocessing = preprocessing or PreprocessingSettings()
        self.networks: dict[str, nn.Module] = {NETWORK: build_network(config)}
        self.optimizers = {"adam": torch.optim.Adam(self.networks[NETWORK].parameters(), config.lr)}

    def prepare_data(self, train_images: Sequence[ImageEntry], val_images: Sequence[ImageEntry], source: Path) -> None:
        config = self.config
        before = config.equalization_order == "before-augmentation"
        self.rng = np.random.default_rng((config.seed, _AUGMENT, self.context.rank))
        self.train_set = load_training_images(train_images, self.preprocessing, config.input_size, before)
        if not self.train_set:
            raise InputError(source, "holds no training image")
        same = val_images is train_images and before  # no images held out: validate on the prepared training set
        validation = self.train_set if same else load_training_images(val_images, self.preprocessing,
                                                                      config.input_size, True)  # fmt: skip
        self.validation = stack([to_canvas(item, config.input_size) for item in validation])

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch: n augmented images and masks, (n, 1, S, S) each."""
        return augmented_batch(self.train_set, self.rng, n, self.config, self.preprocessing)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstructions (N, 1, S, S) float32 of images on the CPU (moved to the device here)."""
        with self.autocast():
            return self.networks[NETWORK](self.to_device(images)).float()

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        images, masks = self.draw(self.config.batch_size)
        reconstruction = self.reconstruct(images)
        loss = masked_mse(reconstruction, images.to(self.device), masks.to(self.device))
        optimizer = self.optimizers["adam"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.networks[NETWORK], self.context)
        optimizer.step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def _reconstruct_validation(self, count: int | None = None) -> torch.Tensor:
        network = self.networks[NETWORK]
        network.eval()
        try:
            images = self.validation[0][:count]
            chunk = self.config.batch_size
            return torch.cat([self.reconstruct(images[start : start + chunk]).cpu()
                              for start in range(0, len(images), chunk)])  # fmt: skip
        finally:
            network.train()

    def validate(self) -> float:
        """Masked MSE of the held-out normal images (intensity units squared), pooled over their mask pixels."""
        images, masks = self.validation
        return float(masked_mse(self._reconstruct_validation(), images, masks))

    def sample_grid(self) -> SampleGrid:
        """Input, reconstruction and absolute error on the mask of the first held-out images."""
        images, masks = (tensor[:GRID_SAMPLES, 0].numpy() for tensor in self.validation)
        reconstruction = self._reconstruct_validation(GRID_SAMPLES)[:, 0].numpy()
        error = np.abs(images - reconstruction) * masks
        return SampleGrid(side_by_side(images, reconstruction, error), ("input", "reconstruction", "error"))

    def state_dict(self) -> dict[str, Any]:
        return {"augment": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["augment"]

    def describe(self) -> dict[str, Any]:
        return architecture_facts(self.config, self.preprocessing)
