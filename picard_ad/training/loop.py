"""The training loop every method's networks share: run folder, checkpoints, exact resume, logs, validation.

A method plugs in a ``TrainingStep`` (its networks, optimizers, data and one iteration); ``Trainer`` does the
rest: it refuses to overwrite another run, seeds everything, writes ``RUN_DIR/last`` every ``checkpoint_every``
iterations (safetensors and JSON, atomically: a killed run loses at most that many iterations and ``resume``
continues bit for bit), logs the losses (CSV, TensorBoard, ``loss_curve.png``), runs the held-out validation every
``validate_every`` iterations keeping the best weights in ``RUN_DIR/best``, writes sample grids, stops a diverging
run with advice, and runs data-parallel over torchrun's processes (``picard_ad.training.distributed``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from picard_ad.config import save_config, to_dict
from picard_ad.data.patches import ImageEntry, data_fingerprint, list_training_images
from picard_ad.device import resolve_device
from picard_ad.errors import ConfigError, InputError, PicardError
from picard_ad.io.writers import atomic_write_text, dumps_json
from picard_ad.training import distributed
from picard_ad.training.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    INFO_FILE,
    checkpoint_dir,
    config_from_info,
    load_training_state,
    read_checkpoint_info,
    rng_states,
    set_rng_states,
    write_checkpoint,
)
from picard_ad.training.config import config_differences
from picard_ad.training.distributed import DistributedContext
from picard_ad.training.logging import TrainingLog, write_sample_grid
from picard_ad.training.step import TrainingStep
from picard_ad.training.threads import ThreadGovernor

RUN_CONFIG_FILE = "config.yaml"


@dataclass
class TrainResult:
    """What a finished run reports: iterations, the held-out metric over time (step, value) with its best, wall
    time, and the training images its data left out."""

    run_dir: Path
    steps: int
    validation_name: str
    validation: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    best_validation: float | None = None
    wall_time_s: float = 0.0
    excluded_images: list[Path] = field(default_factory=list)

    def summary(self) -> list[str]:
        """What the command line says of the run: iterations, time, the best held-out value, images left out."""
        best = ""
        if self.best_validation is not None:
            best = f"; best held-out {self.validation_name} {self.best_validation:.4g} at iteration {self.best_step}"
        lines = [f"trained to iteration {self.steps} in {self.wall_time_s:.0f} s{best}"]
        return lines + [f"left out (no usable patch found): {path}" for path in self.excluded_images]


def checkpoint_info(
    method: str,
    config: Any,
    step: int,
    fingerprint: str | None,
    facts: dict[str, Any] | None = None,
    validation: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint: what loading it and ``picard-ad describe`` need to know.

    facts: what the method adds (``TrainingStep.describe``); validation: the held-out metric by name, e.g.
    ``{"val_l1": 0.05}``; fingerprint: of the training images (None for networks not trained here).
    """
    from picard_ad import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": method,
        **(facts or {}),
        "step": step,
        **(validation or {}),
        "data_fingerprint": fingerprint,
        "package_version": __version__,
        "torch_version": torch.__version__,
        "train_config": to_dict(config),
    }


def run_holds_training(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds (part of) a training run."""
    return any((run_dir / name).exists() for name in (RUN_CONFIG_FILE, "last", ".last.previous", "train_log.csv"))


def stored_run_config(run_dir: str | Path, cls: type) -> Any:
    """The training config (dataclass ``cls``) of the last checkpoint of a run: what resuming continues."""
    directory = checkpoint_dir(run_dir, "last")
    return config_from_info(read_checkpoint_info(directory), cls, directory / INFO_FILE)


def split_validation_images(
    images: list[ImageEntry], config: Any, source: Path
) -> tuple[list[ImageEntry], list[ImageEntry]]:
    """(training, held-out) images; with ``val_images == 0`` validation uses the training images."""
    if config.val_images == 0:
        return images, images
    if len(images) <= config.val_images:
        raise InputError(
            source,
            f"has {len(images)} image(s), too few to hold out val_images={config.val_images} for validation "
            "and still train (set val_images: 0 to validate on training images, as the PICARD paper did)",
        )
    order = np.random.default_rng((config.seed, 3)).permutation(len(images))
    held_out = set(order[: config.val_images].tolist())
    return (
        [image for i, image in enumerate(images) if i not in held_out],
        [image for i, image in enumerate(images) if i in held_out],
    )


class Trainer:
    """Trains the networks of one method in one run folder, from scratch or resuming its last checkpoint.

    Args:
        method: the method's registered name, recorded in every checkpoint.
        config: the method's resolved training config (a ``RunSettings`` subclass).
        step_class: the method's ``TrainingStep``.
        data: a folder of images (searched recursively), a ``.txt`` list of image paths, one image file, or
            image headers (``picard_ad.data.patches.ImageEntry``) with ``source`` naming where they come from.
        run_dir: output folder (checkpoints, logs, plots); must not hold another run unless ``resume``.
        resume: continue the run in ``run_dir`` exactly where its last checkpoint stopped.
        context: the process group when launched by torchrun (``distributed.init_from_torchrun``).
        progress: show a tqdm progress bar (rank 0 only).
        source: where listed ``data`` came from, named in errors.
    """

    def __init__(
        self,
        method: str,
        config: Any,
        step_class: type[TrainingStep],
        data: str | Path | Sequence[ImageEntry],
        run_dir: str | Path,
        *,
        resume: bool = False,
        context: DistributedContext | None = None,
        progress: bool = True,
        source: Path | None = None,
    ):
        self.method = method
        self.config = config
        self.run_dir = Path(run_dir)
        self.context = context or DistributedContext()
        self.progress = progress and self.context.is_main
        self.device = resolve_device(config.device, self.context.local_rank if self.context.enabled else None)
        self._check_run_dir(resume)
        distributed.barrier(self.context)  # every rank checks the run folder before rank 0 writes into it

        if isinstance(data, (str, Path)):
            self.source = Path(data)
            images = list_training_images(self.source)
        else:
            self.source = source if source is not None else self.run_dir
            images = list(data)
        self.fingerprint = data_fingerprint(images)
        train_images, val_images = split_validation_images(images, config, self.source)

        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.task = step_class(config, self.device, self.context)
        for module in self.task.networks.values():
            module.to(self.device, memory_format=self.task.memory_format)
            distributed.broadcast_parameters(module, self.context)
        # ranks share the seed of the initial weights but draw their own random numbers from here on
        torch.manual_seed(int(np.random.SeedSequence((config.seed, 4, self.context.rank)).generate_state(1)[0]))
        self.task.prepare_data(train_images, val_images, self.source)

        self.step = 0
        self.best_validation: float | None = None
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
            self._write_run_info(self._info(self.step))
            self.log = TrainingLog(self.run_dir, self.task.loss_names, self.task.validation_name,
                                   tensorboard=config.tensorboard, resume_step=self.step)  # fmt: skip

    # -- set-up --------------------------------------------------------------------------------------------------

    def _check_run_dir(self, resume: bool) -> None:
        if resume:
            directory = checkpoint_dir(self.run_dir, "last")
            info = read_checkpoint_info(directory)
            if info["format"] != FORMAT:
                raise ConfigError(
                    f"{self.run_dir}: written by an earlier picard-ad (checkpoint format {info['format']}); it can be "
                    "heatmapped but not resumed: start a new run"
                )
            if info["method"] != self.method:
                raise ConfigError(f"{self.run_dir}: holds a run of method '{info['method']}', not '{self.method}'")
            stored = config_from_info(info, type(self.config), directory / INFO_FILE)
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

    def _restore(self) -> None:
        directory = checkpoint_dir(self.run_dir, "last")
        info = read_checkpoint_info(directory)
        if info.get("data_fingerprint") != self.fingerprint:
            raise ConfigError(
                f"{self.run_dir}: the images in {self.source} differ from those the run was trained on "
                f"(data fingerprint {self.fingerprint}, checkpoint {info.get('data_fingerprint')}); start a new run"
            )
        state = load_training_state(directory, self.task.networks, self.task.optimizers)
        ranks = state["ranks"]
        if len(ranks) != self.context.world_size:
            raise ConfigError(
                f"{self.run_dir}: the checkpoint was written by {len(ranks)} process(es); resume with the same number "
                f"(now {self.context.world_size}) to continue exactly"
            )
        mine = ranks[self.context.rank]
        set_rng_states(mine["rng"])
        self.task.load_state_dict(mine["task"])
        self._log_sums = {name: (torch.tensor(total), int(count)) for name, (total, count) in mine["log_sums"].items()}
        self.step = int(state["step"])
        self.best_validation = state.get("best_validation")
        self.best_step = state.get("best_step")
        self.validation_history = [(int(s), float(v)) for s, v in state.get("validation", [])]
        self._elapsed_before = float(state.get("elapsed_s", 0.0))

    def _info(self, step: int, validation: float | None = None) -> dict[str, Any]:
        facts, name = self.task.describe(), self.task.validation_name
        return checkpoint_info(self.method, self.config, step, self.fingerprint, facts, {name: validation})

    def _write_run_info(self, info: dict[str, Any]) -> None:
        """``RUN_DIR/config.json``: the latest checkpoint's description, read by ``picard-ad describe``."""
        atomic_write_text(self.run_dir / INFO_FILE, dumps_json(info, indent=1) + "\n")

    # -- checkpoints, validation, samples ------------------------------------------------------------------------

    def _elapsed(self) -> float:
        """Training seconds so far, earlier sessions of a resumed run included."""
        return self._elapsed_before + time.perf_counter() - self._session_start

    def _rank_state(self) -> dict:
        return {
            "rng": rng_states(),
            "task": self.task.state_dict(),
            "log_sums": {name: [float(total), count] for name, (total, count) in self._log_sums.items()},
        }

    def save_checkpoint(self) -> None:
        """Write ``RUN_DIR/last`` (every rank must call this: it gathers the ranks' RNG and data states)."""
        ranks = distributed.gather_json(self._rank_state(), self.context, self.device)
        if not self.context.is_main:
            return
        info = self._info(self.step, self.validation_history[-1][1] if self.validation_history else None)
        write_checkpoint(
            self.run_dir / "last",
            self.task.networks,
            info,
            optimizers=self.task.optimizers,
            trainer_state={
                "step": self.step,
                "best_validation": self.best_validation,
                "best_step": self.best_step,
                "validation": self.validation_history,
                "elapsed_s": self._elapsed(),
                "ranks": ranks,
            },
        )
        self._write_run_info(info)

    def _validate_and_keep_best(self) -> float:
        value = self.task.validate()
        self.validation_history.append((self.step, value))
        if self.best_validation is None or value < self.best_validation:
            self.best_validation, self.best_step = value, self.step
            write_checkpoint(self.run_dir / "best", self.task.networks, self._info(self.step, value))
        self.log.log_validation(self.step, value, self.best_validation)
        self.log.write_loss_curve(self.run_dir / "loss_curve.png", self.task.curve_panels)
        return value

    def _write_samples(self) -> None:
        grid = self.task.sample_grid()
        if grid is not None:
            write_sample_grid(self.run_dir / "samples" / f"step_{self.step:08d}.png", grid, f"iteration {self.step}")
            self.log.log_samples(self.step, grid)

    # -- the loop ------------------------------------------------------------------------------------------------

    def _log(self, interval_samples: int, interval_seconds: float, bar: tqdm) -> None:
        means = {
            name: distributed.average_scalar(float(total) / count, self.context, self.device)
            for name, (total, count) in self._log_sums.items()
        }
        diverged = [name for name, value in means.items() if not math.isfinite(value)]
        if diverged:
            raise PicardError(
                f"training diverged by iteration {self.step} ({', '.join(diverged)} not finite); the last good "
                f"checkpoint is {self.run_dir / 'last'}: resume it with --no-bf16, or start a new run with a lower lr"
            )
        rate = interval_samples / max(interval_seconds, 1e-9)
        if self.log is not None:
            self.log.log_training(self.step, {**means, "samples_per_s": rate, "elapsed_s": self._elapsed()})
        shown = {name: f"{value:.3g}" for name, value in list(means.items())[:3]}
        best = f"{self.best_validation:.4g}" if self.best_validation is not None else "-"
        bar.set_postfix(**shown, best=best, per_s=f"{rate:.1f}", refresh=False)

    def train(self) -> TrainResult:
        """Run iterations ``step + 1 .. config.steps``; checkpoint every ``checkpoint_every`` and at the end."""
        config = self.config
        started = time.perf_counter()
        self._session_start = started
        bar = tqdm(total=config.steps, initial=self.step, disable=not self.progress, unit="it", dynamic_ncols=True,
                   desc=f"training {self.method}", mininterval=1.0)  # fmt: skip
        interval_start, interval_samples = time.perf_counter(), 0
        # One process on the CPU: its threads follow the free cores (adaptive_threads) or it warns of contention.
        governor = None
        if self.device.type == "cpu" and self.context.world_size == 1:
            governor = ThreadGovernor(adapt=config.adaptive_threads)
        try:
            while self.step < config.steps:
                losses = self.task.step(self.step + 1)
                self.step += 1
                if governor is not None:
                    governor.update()
                interval_samples += config.batch_size * self.context.world_size
                for name, value in losses.items():
                    total, count = self._log_sums.get(name, (0.0, 0))
                    self._log_sums[name] = (total + value, count + 1)
                bar.update(1)
                last = self.step == config.steps
                if self.step % config.log_every == 0 or last:
                    now = time.perf_counter()
                    self._log(interval_samples, now - interval_start, bar)
                    self._log_sums = {}
                    interval_start, interval_samples = now, 0
                if self.context.is_main and (self.step % config.validate_every == 0 or last):
                    self._validate_and_keep_best()
                if self.context.is_main and (self.step % config.sample_every == 0 or last):
                    self._write_samples()
                if self.step % config.checkpoint_every == 0 or last:
                    self.save_checkpoint()
        finally:
            if governor is not None:
                governor.restore()
            bar.close()
            self.task.close()
            if self.log is not None:
                self.log.close()
        return TrainResult(
            run_dir=self.run_dir,
            steps=self.step,
            validation_name=self.task.validation_name,
            validation=list(self.validation_history),
            best_step=self.best_step,
            best_validation=self.best_validation,
            wall_time_s=time.perf_counter() - started,
            excluded_images=self.task.excluded_images,
        )
