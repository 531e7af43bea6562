"""PICARD's training step: the WGAN-GP iteration of the completion network (reference ``inpainter/trainer.py``,
reimplemented) for the generic ``picard_ad.training.Trainer``.

Each iteration draws one batch of tissue patches and holes, runs the generator, and takes one critic step (local +
global critics, gradient penalty); every ``n_critic``-th iteration the generator steps too. Unlike the reference,
the generator's adversarial loss never adds gradients to the critics (they are frozen while it is backpropagated),
and autograd anomaly detection stays off (it only slows training). The paper's stopping rule is tracked as the
completion L1 on a fixed held-out set of patches with centred test-time holes; the trainer keeps the best
checkpoint in ``RUN_DIR/best``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from picard_ad.data.holes import centred_hole_masks, sample_hole_masks
from picard_ad.data.patches import ImageEntry, PatchSampler
from picard_ad.methods.picard.config import PicardTrainConfig
from picard_ad.methods.picard.critics import GlobalCritic, LocalCritic
from picard_ad.methods.picard.generator import InpaintingGenerator
from picard_ad.methods.picard.losses import (
    composite,
    critic_wasserstein_loss,
    crop_bbox,
    discounted_hole_l1,
    generator_adversarial_loss,
    gradient_penalty,
    known_region_l1,
    spatial_discount_mask,
)
from picard_ad.training import distributed
from picard_ad.training.distributed import DistributedContext
from picard_ad.training.logging import side_by_side
from picard_ad.training.step import CurvePanel, SampleGrid, TrainingStep, frozen

GRID_SAMPLES = 6
# streams of the samplers, derived from config.seed
_TRAIN_STREAM, _VALIDATION_STREAM = 0, 1_000_000
INTENSITY_NORMALISATION = (
    "reader output in [0, 1] (picard_ad.io, normalization='auto'), then x * 2 - 1 into [-1, 1]; "
    "hole pixels set to 0 by the generator"
)


def build_networks(config: PicardTrainConfig) -> dict[str, nn.Module]:
    """Freshly initialised generator and critics for ``config`` (critic inputs: hole box and patch), by the names
    their checkpoint files carry."""
    return {
        "generator": InpaintingGenerator(in_channels=config.in_channels, cnum=config.cnum),
        "local_critic": LocalCritic(in_channels=config.in_channels, cnum=config.cnum, input_size=config.hole_size),
        "global_critic": GlobalCritic(in_channels=config.in_channels, cnum=config.cnum, input_size=config.patch_size),
    }


def architecture_facts(config: PicardTrainConfig) -> dict[str, Any]:
    """What a checkpoint's ``config.json`` says about the networks (read by ``picard-ad describe``)."""
    return {
        "architecture": "picard-inpainter",
        "in_channels": config.in_channels,
        "cnum": config.cnum,
        "patch_size": config.patch_size,
        "hole_size": config.hole_size,
        "local_critic_input": config.hole_size,
        "global_critic_input": config.patch_size,
        "intensity_normalisation": INTENSITY_NORMALISATION,
    }


class PicardTraining(TrainingStep):
    """Generator G and its local and global critics, Adam each, trained on tissue patches with random holes."""

    loss_names = ("d_loss", "wgan_d", "gp", "g_loss", "l1", "ae", "wgan_g")
    validation_name = "val_l1"
    curve_panels = (
        CurvePanel("completion losses", (("l1", "hole L1 (train, discounted)"), ("ae", "known-region L1 (train)")),
                   log_scale=True, with_validation=True),
        CurvePanel("critic losses", (("wgan_d", "critic Wasserstein term"), ("gp", "gradient penalty"))),
    )  # fmt: skip

    def __init__(self, config: PicardTrainConfig, device: torch.device, context: DistributedContext):
        super().__init__(config, device, context)
        self.networks = build_networks(config)
        critics = self.networks["local_critic"], self.networks["global_critic"]
        self.optimizers = {
            "generator": torch.optim.Adam(self.networks["generator"].parameters(), lr=config.lr, betas=config.betas),
            "critics": torch.optim.Adam([p for c in critics for p in c.parameters()], lr=config.lr, betas=config.betas),
        }

    def prepare_data(self, train_images: Sequence[ImageEntry], val_images: Sequence[ImageEntry], source: Path) -> None:
        config = self.config
        self.source = source
        self.hole_rng = np.random.default_rng((config.seed, 5, self.context.rank))
        self.sampler = self._sampler(train_images, _TRAIN_STREAM + self.context.rank, config.num_workers)
        validation = self._sampler(val_images, _VALIDATION_STREAM, 0)
        try:
            self.validation_patches = torch.from_numpy(validation.sample(config.val_patches))
        finally:
            validation.close()
        self.discount = spatial_discount_mask(config.hole_size, config.hole_size, config.spatial_discount_gamma)
        self.discount = self.discount.to(self.device)

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

    # -- one iteration -------------------------------------------------------------------------------------------

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int]]:
        """(patches (N, C, P, P) in [-1, 1], hole masks (N, 1, P, P), the un-shrunk hole box) on the device."""
        config = self.config
        patches = torch.from_numpy(self.sampler.sample(config.batch_size))[:, None] * 2 - 1
        images = patches.expand(-1, config.in_channels, -1, -1)
        holes = sample_hole_masks(
            config.batch_size, config.patch_size, config.hole_size, config.hole_max_shrink, self.hole_rng
        )
        return self.to_device(images), self.to_device(holes.mask), holes.bbox

    def _critic_scores(self, critic: nn.Module, images: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return critic(images).float().reshape(-1)

    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        """One critic iteration, plus a generator step on every ``n_critic``-th; returns the detached losses."""
        config = self.config
        generator_step = iteration % config.n_critic == 0
        gen, local_critic, global_critic = (self.networks[name] for name in ("generator", "local_critic",
                                                                                 "global_critic"))  # fmt: skip
        truth, mask, bbox = self.batch()
        with torch.set_grad_enabled(generator_step), self.autocast():
            stage1, stage2 = gen(truth, mask)
        stage1, stage2 = stage1.float(), stage2.float()
        completed = composite(stage2, truth, mask)

        fake = completed.detach()
        local_real, local_fake = crop_bbox(truth, bbox), crop_bbox(fake, bbox)
        wgan_d = critic_wasserstein_loss(
            self._critic_scores(local_critic, local_real), self._critic_scores(local_critic, local_fake)
        ) + config.global_wgan_loss_alpha * critic_wasserstein_loss(
            self._critic_scores(global_critic, truth), self._critic_scores(global_critic, fake)
        )
        gp = gradient_penalty(lambda x: self._critic_scores(local_critic, x), local_real, local_fake)
        gp = gp + gradient_penalty(lambda x: self._critic_scores(global_critic, x), truth, fake)
        d_loss = wgan_d + config.wgan_gp_lambda * gp
        self.optimizers["critics"].zero_grad(set_to_none=True)
        d_loss.backward()
        losses = {"d_loss": d_loss.detach(), "wgan_d": wgan_d.detach(), "gp": gp.detach()}

        if generator_step:
            l1 = discounted_hole_l1(stage1, stage2, truth, mask, bbox, self.discount, config.coarse_l1_alpha)
            ae = known_region_l1(stage1, stage2, truth, mask, config.coarse_l1_alpha)
            with frozen(local_critic, global_critic):
                wgan_g = generator_adversarial_loss(
                    self._critic_scores(local_critic, crop_bbox(completed, bbox))
                ) + config.global_wgan_loss_alpha * generator_adversarial_loss(
                    self._critic_scores(global_critic, completed)
                )
            g_loss = config.l1_loss_alpha * l1 + config.ae_loss_alpha * ae + config.gan_loss_alpha * wgan_g
            self.optimizers["generator"].zero_grad(set_to_none=True)
            g_loss.backward()
            distributed.average_gradients(gen, self.context)
            self.optimizers["generator"].step()
            losses.update(g_loss=g_loss.detach(), l1=l1.detach(), ae=ae.detach(), wgan_g=wgan_g.detach())

        distributed.average_gradients(local_critic, self.context)
        distributed.average_gradients(global_critic, self.context)
        self.optimizers["critics"].step()
        return losses

    # -- validation and samples ----------------------------------------------------------------------------------

    @torch.no_grad()
    def complete(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage-2 composites of (N, P, P) [0, 1] patches with the centred test-time hole -> ((N,P,P), mask)."""
        config = self.config
        generator = self.networks["generator"]
        generator.eval()
        try:
            outputs = []
            mask = centred_hole_masks(1, config.patch_size, config.hole_size).mask
            for start in range(0, len(patches), config.batch_size):
                chunk = patches[start : start + config.batch_size][:, None] * 2 - 1
                images = self.to_device(chunk.expand(-1, config.in_channels, -1, -1))
                masks = self.to_device(mask.expand(len(chunk), -1, -1, -1))
                with self.autocast():
                    _, stage2 = generator(images, masks)
                completed = composite(stage2.float(), images, masks)
                outputs.append(((completed[:, :1] + 1) / 2).clamp(0, 1).cpu()[:, 0])
        finally:
            generator.train()
        return torch.cat(outputs), mask[0, 0]

    def validate(self) -> float:
        """Held-out completion L1: mean |completion - truth| over the hole pixels, [0, 1] intensity units."""
        completed, mask = self.complete(self.validation_patches)
        errors = (completed - self.validation_patches).abs() * mask
        return float(errors.sum() / (mask.sum() * len(completed)))

    def sample_grid(self) -> SampleGrid:
        """(masked input, completion, ground truth) of the first validation patches."""
        truth = self.validation_patches[:GRID_SAMPLES]
        completed, mask = self.complete(truth)
        masked = truth * (1 - mask) + 0.5 * mask
        image = side_by_side(masked.numpy(), completed.numpy(), truth.numpy())
        return SampleGrid(image, ("masked input", "completion", "ground truth"))

    # -- state ---------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"holes": self.hole_rng.bit_generator.state, "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.hole_rng.bit_generator.state = state["holes"]
        self.sampler.load_state_dict(state["sampler"])

    def describe(self) -> dict[str, Any]:
        return architecture_facts(self.config)

    @property
    def excluded_images(self) -> list[Path]:
        return self.sampler.excluded_images

    def close(self) -> None:
        self.sampler.close()
