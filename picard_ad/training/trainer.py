"""The WGAN-GP training loop of the PICARD completion network (reference ``inpainter/trainer.py``, reimplemented).

Each iteration draws one batch of tissue patches and holes, runs the generator, and takes one critic step
(local + global critics, gradient penalty); every ``n_critic``-th iteration the generator steps too. Unlike the
reference, the generator's adversarial loss never adds gradients to the critics (they are frozen while it is
backpropagated), and autograd anomaly detection stays off (it only slows training). The stopping rule of the paper is tracked as the completion L1 on
a fixed held-out set of patches with centred test-time holes; the best checkpoint is kept in ``RUN_DIR/best``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from picard_ad.config import save_config
from picard_ad.data.holes import centred_hole_masks, sample_hole_masks
from picard_ad.data.patches import (
    ImageEntry,
    PatchSampler,
    data_fingerprint,
    list_training_images,
)
from picard_ad.device import resolve_device
from picard_ad.errors import ConfigError, InputError, PicardError
from picard_ad.io.writers import atomic_write_text
from picard_ad.training import distributed
from picard_ad.training.checkpoint import (
    build_networks,
    checkpoint_dir,
    checkpoint_info,
    config_from_info,
    load_training_state,
    read_checkpoint_info,
    rng_states,
    set_rng_states,
    write_checkpoint,
)
from picard_ad.training.config import TrainConfig, config_differences
from picard_ad.training.distributed import DistributedContext
from picard_ad.training.logging import TrainingLog, sample_grid, write_sample_grid
from picard_ad.training.losses import (
    composite,
    critic_wasserstein_loss,
    crop_bbox,
    discounted_hole_l1,
    generator_adversarial_loss,
    gradient_penalty,
    known_region_l1,
    spatial_discount_mask,
)

RUN_CONFIG_FILE = "config.yaml"
GRID_SAMPLES = 6
# streams of the samplers and of the hole generator, all derived from config.seed
_TRAIN_STREAM, _VALIDATION_STREAM = 0, 1_000_000


@dataclass
class TrainResult:
    """What a finished run reports. val_l1 values are mean |completion - truth| in the hole, [0, 1] units."""

    run_dir: Path
    steps: int
    validation: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    best_val_l1: float | None = None
    wall_time_s: float = 0.0
    excluded_images: list[Path] = field(default_factory=list)


def write_run_info(run_dir: Path, info: dict) -> None:
    """``RUN_DIR/config.json``: the latest checkpoint's description, read by ``picard-ad describe``."""
    atomic_write_text(run_dir / "config.json", json.dumps(info, indent=1) + "\n")


def run_holds_training(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds (part of) a training run."""
    return any((run_dir / name).exists() for name in (RUN_CONFIG_FILE, "last", ".last.previous", "train_log.csv"))


def stored_run_config(run_dir: str | Path) -> TrainConfig:
    """The training config of the last checkpoint of a run (what ``--resume`` continues)."""
    directory = checkpoint_dir(run_dir, "last")
    return config_from_info(read_checkpoint_info(directory), directory / "config.json")


def split_validation_images(
    images: list[ImageEntry], config: TrainConfig, source: Path
) -> tuple[list[ImageEntry], list[ImageEntry]]:
    """(training, held-out) images; with ``val_images == 0`` validation patches come from the training images."""
    if config.val_images == 0:
        return images, images
    if len(images) <= config.val_images:
        raise InputError(
            source,
            f"has {len(images)} image(s), too few to hold out val_images={config.val_images} for validation "
            "and still train (set val_images: 0 to validate on training images, as the paper did)",
        )
    order = np.random.default_rng((config.seed, 3)).permutation(len(images))
    held_out = set(order[: config.val_images].tolist())
    return (
        [image for i, image in enumerate(images) if i not in held_out],
        [image for i, image in enumerate(images) if i in held_out],
    )


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` do not accumulate gradients inside the block."""
    params = [p for module in modules for p in module.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


class Trainer:
    """Trains generator and critics of one run folder, from scratch or resuming its last checkpoint.

    Args:
        config: the resolved training config.
        data: a folder of images (searched recursively), a ``.txt`` list of image paths, or one image file.
        run_dir: output folder (checkpoints, logs, plots); must not hold another run unless ``resume``.
        resume: continue the run in ``run_dir`` exactly where its last checkpoint stopped.
        context: the process group when launched by torchrun (``distributed.init_from_torchrun``).
        progress: show a tqdm progress bar (rank 0 only).
    """

    def __init__(
        self,
        config: TrainConfig,
        data: str | Path,
        run_dir: str | Path,
        *,
        resume: bool = False,
        context: DistributedContext | None = None,
        progress: bool = True,
    ):
        self.config = config
        self.data = Path(data)
        self.run_dir = Path(run_dir)
        self.context = context or DistributedContext()
        self.progress = progress and self.context.is_main
        self.device = resolve_device(config.device, self.context.local_rank if self.context.enabled else None)
        self._check_run_dir(resume)
        distributed.barrier(self.context)  # every rank checks the run folder before rank 0 writes into it

        images = list_training_images(self.data)
        self.fingerprint = data_fingerprint(images)
        train_images, val_images = split_validation_images(images, config, self.data)

        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.networks = build_networks(config)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        for module in self.networks.values():
            module.to(self.device, memory_format=memory_format)
            distributed.broadcast_parameters(module, self.context)
        self.memory_format = memory_format
        critic_params = list(self.networks.local_critic.parameters()) + list(self.networks.global_critic.parameters())
        self.optimizers = {
            "generator": torch.optim.Adam(self.networks.generator.parameters(), lr=config.lr, betas=config.betas),
            "critics": torch.optim.Adam(critic_params, lr=config.lr, betas=config.betas),
        }
        # ranks share the seed of the initial weights but draw their own interpolation weights
        torch.manual_seed(int(np.random.SeedSequence((config.seed, 4, self.context.rank)).generate_state(1)[0]))
        self.hole_rng = np.random.default_rng((config.seed, 5, self.context.rank))
        self.sampler = self._sampler(train_images, _TRAIN_STREAM + self.context.rank, config.num_workers)
        self.validation_patches = self._validation_patches(val_images)
        self.discount = spatial_discount_mask(config.hole_size, config.hole_size, config.spatial_discount_gamma).to(
            self.device
        )

        self.step = 0
        self.best_val_l1: float | None = None
        self.best_step: int | None = None
        self.validation_history: list[tuple[int, float]] = []
        self._log_sums: dict[str, tuple[torch.Tensor | float, int]] = {}  # losses since the last log row
        self._elapsed_before = 0.0  # training seconds of earlier sessions of a resumed run
        self._session_start = time.perf_counter()
        if resume:
            self._restore()
        self.log: TrainingLog | None = None
        if self.context.is_main:
            save_config(config, self.run_dir / RUN_CONFIG_FILE)
            write_run_info(self.run_dir, checkpoint_info(config, self.step, self.fingerprint))
            self.log = TrainingLog(self.run_dir, tensorboard=config.tensorboard, resume_step=self.step)

    # -- set-up --------------------------------------------------------------------------------------------------

    def _check_run_dir(self, resume: bool) -> None:
        if resume:
            stored = stored_run_config(self.run_dir)
            differences = config_differences(stored, self.config)
            if differences:
                raise ConfigError(
                    f"{self.run_dir}: cannot resume with a different config (only run-control fields such as "
                    f"steps may change): {'; '.join(differences)}"
                )
        elif run_holds_training(self.run_dir):
            raise ConfigError(
                f"{self.run_dir}: already holds a training run; pass --resume to continue it, or choose another --out"
            )

    def _sampler(self, images: list[ImageEntry], stream: int, num_workers: int) -> PatchSampler:
        config = self.config
        return PatchSampler(
            images,
            config.patch_size,
            seed=config.seed,
            stream=stream,
            tissue_threshold=config.tissue_threshold,
            min_tissue_fraction=config.min_tissue_fraction,
            flips=config.flips,
            pool_size=config.image_pool_size,
            patches_per_visit=config.patches_per_visit,
            num_workers=num_workers,
            source=self.data,
        )

    def _validation_patches(self, images: list[ImageEntry]) -> torch.Tensor:
        sampler = self._sampler(images, _VALIDATION_STREAM, 0)
        try:
            return torch.from_numpy(sampler.sample(self.config.val_patches))
        finally:
            sampler.close()

    def _restore(self) -> None:
        directory = checkpoint_dir(self.run_dir, "last")
        info = read_checkpoint_info(directory)
        if info.get("data_fingerprint") != self.fingerprint:
            raise ConfigError(
                f"{self.run_dir}: the images in {self.data} differ from those the run was trained on "
                f"(data fingerprint {self.fingerprint}, checkpoint {info.get('data_fingerprint')}); start a new run"
            )
        state = load_training_state(directory, self.networks, self.optimizers)
        ranks = state["ranks"]
        if len(ranks) != self.context.world_size:
            raise ConfigError(
                f"{self.run_dir}: the checkpoint was written by {len(ranks)} process(es); resume with the same number "
                f"(now {self.context.world_size}) to continue exactly"
            )
        mine = ranks[self.context.rank]
        set_rng_states(mine["rng"])
        self.hole_rng.bit_generator.state = mine["holes"]
        self.sampler.load_state_dict(mine["sampler"])
        self._log_sums = {name: (torch.tensor(total), int(count)) for name, (total, count) in mine["log_sums"].items()}
        self.step = int(state["step"])
        self.best_val_l1 = state.get("best_val_l1")
        self.best_step = state.get("best_step")
        self.validation_history = [(int(s), float(v)) for s, v in state.get("validation", [])]
        self._elapsed_before = float(state.get("elapsed_s", 0.0))

    # -- one iteration -------------------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int]]:
        config = self.config
        patches = torch.from_numpy(self.sampler.sample(config.batch_size))[:, None] * 2 - 1
        images = patches.expand(-1, config.in_channels, -1, -1)
        holes = sample_hole_masks(
            config.batch_size, config.patch_size, config.hole_size, config.hole_max_shrink, self.hole_rng
        )
        return self._to_device(images), self._to_device(holes.mask), holes.bbox

    def _critic_scores(self, critic: nn.Module, images: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return critic(images).float().reshape(-1)

    def train_step(self, generator_step: bool) -> dict[str, torch.Tensor]:
        """One critic iteration (plus a generator step if asked); returns the detached losses."""
        config = self.config
        gen, local_critic, global_critic = self.networks.values()
        truth, mask, bbox = self._batch()
        with torch.set_grad_enabled(generator_step), self._autocast():
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

    # -- validation, samples, checkpoints ------------------------------------------------------------------------

    @torch.no_grad()
    def complete(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage-2 composites of (N, P, P) [0, 1] patches with the centred test-time hole -> ((N,P,P), mask)."""
        config = self.config
        generator = self.networks.generator
        generator.eval()
        try:
            outputs = []
            mask = centred_hole_masks(1, config.patch_size, config.hole_size).mask
            for start in range(0, len(patches), config.batch_size):
                chunk = patches[start : start + config.batch_size][:, None] * 2 - 1
                images = self._to_device(chunk.expand(-1, config.in_channels, -1, -1))
                masks = self._to_device(mask.expand(len(chunk), -1, -1, -1))
                with self._autocast():
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

    def write_samples(self, path: Path) -> np.ndarray:
        """A grid of (masked input, completion, ground truth) for the first validation patches."""
        truth = self.validation_patches[:GRID_SAMPLES]
        completed, mask = self.complete(truth)
        masked = truth * (1 - mask) + 0.5 * mask
        grid = sample_grid(masked.numpy(), completed.numpy(), truth.numpy())
        write_sample_grid(path, grid, f"iteration {self.step}")
        return grid

    def _elapsed(self) -> float:
        """Training seconds so far, earlier sessions of a resumed run included."""
        return self._elapsed_before + time.perf_counter() - self._session_start

    def _rank_state(self) -> dict:
        return {
            "rng": rng_states(),
            "holes": self.hole_rng.bit_generator.state,
            "sampler": self.sampler.state_dict(),
            "log_sums": {name: [float(total), count] for name, (total, count) in self._log_sums.items()},
        }

    def save_checkpoint(self) -> None:
        """Write ``RUN_DIR/last`` (every rank must call this: it gathers the ranks' RNG and sampler states)."""
        ranks = distributed.gather_json(self._rank_state(), self.context, self.device)
        if not self.context.is_main:
            return
        last_l1 = self.validation_history[-1][1] if self.validation_history else None
        info = checkpoint_info(self.config, self.step, self.fingerprint, last_l1)
        write_checkpoint(
            self.run_dir / "last",
            self.networks,
            info,
            optimizers=self.optimizers,
            trainer_state={
                "step": self.step,
                "best_val_l1": self.best_val_l1,
                "best_step": self.best_step,
                "validation": self.validation_history,
                "elapsed_s": self._elapsed(),
                "ranks": ranks,
            },
        )
        write_run_info(self.run_dir, info)

    def _validate_and_keep_best(self) -> float:
        val_l1 = self.validate()
        self.validation_history.append((self.step, val_l1))
        if self.best_val_l1 is None or val_l1 < self.best_val_l1:
            self.best_val_l1, self.best_step = val_l1, self.step
            write_checkpoint(
                self.run_dir / "best", self.networks, checkpoint_info(self.config, self.step, self.fingerprint, val_l1)
            )
        self.log.log_validation(self.step, val_l1, self.best_val_l1)
        self.log.write_loss_curve(self.run_dir / "loss_curve.png")
        return val_l1

    # -- the loop ------------------------------------------------------------------------------------------------

    def train(self) -> TrainResult:
        """Run iterations ``step + 1 .. config.steps``; checkpoint every ``checkpoint_every`` and at the end."""
        config = self.config
        started = time.perf_counter()
        self._session_start = started
        bar = tqdm(
            total=config.steps, initial=self.step, disable=not self.progress, unit="it", dynamic_ncols=True,
            desc="training", mininterval=1.0,
        )  # fmt: skip
        interval_start, interval_patches = time.perf_counter(), 0
        try:
            while self.step < config.steps:
                losses = self.train_step(generator_step=(self.step + 1) % config.n_critic == 0)
                self.step += 1
                interval_patches += config.batch_size * self.context.world_size
                for name, value in losses.items():
                    total, count = self._log_sums.get(name, (0.0, 0))
                    self._log_sums[name] = (total + value, count + 1)
                bar.update(1)
                last = self.step == config.steps
                if self.step % config.log_every == 0 or last:
                    means = {
                        name: distributed.average_scalar(float(total) / count, self.context, self.device)
                        for name, (total, count) in self._log_sums.items()
                    }
                    diverged = [name for name, value in means.items() if not math.isfinite(value)]
                    if diverged:
                        raise PicardError(
                            f"training diverged by iteration {self.step} ({', '.join(diverged)} not finite); the "
                            f"last good checkpoint is {self.run_dir / 'last'}: resume it with --no-bf16, or start "
                            "a new run with a lower lr"
                        )
                    now = time.perf_counter()
                    rate = interval_patches / max(now - interval_start, 1e-9)
                    if self.log is not None:
                        self.log.log_training(self.step, {**means, "patches_per_s": rate, "elapsed_s": self._elapsed()})
                    bar.set_postfix(
                        d=f"{means['d_loss']:.3g}", l1=f"{means.get('l1', float('nan')):.3g}",
                        val=f"{self.best_val_l1:.4f}" if self.best_val_l1 is not None else "-",
                        px_s=f"{rate:.1f}", refresh=False,
                    )  # fmt: skip
                    self._log_sums = {}
                    interval_start, interval_patches = now, 0
                if self.context.is_main and (self.step % config.validate_every == 0 or last):
                    self._validate_and_keep_best()
                if self.context.is_main and (self.step % config.sample_every == 0 or last):
                    grid = self.write_samples(self.run_dir / "samples" / f"step_{self.step:08d}.png")
                    self.log.log_samples(self.step, grid)
                if self.step % config.checkpoint_every == 0 or last:
                    self.save_checkpoint()
        finally:
            bar.close()
            self.sampler.close()
            if self.log is not None:
                self.log.close()
        return TrainResult(
            run_dir=self.run_dir,
            steps=self.step,
            validation=list(self.validation_history),
            best_step=self.best_step,
            best_val_l1=self.best_val_l1,
            wall_time_s=time.perf_counter() - started,
            excluded_images=self.sampler.excluded_images,
        )


def train(
    config: TrainConfig,
    data: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = False,
    context: DistributedContext | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume) a completion network; see ``Trainer`` for the arguments."""
    return Trainer(config, data, run_dir, resume=resume, context=context, progress=progress).train()
