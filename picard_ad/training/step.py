"""What a method plugs into the generic training loop: its networks, optimizers and one training iteration."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from picard_ad.data.patches import ImageEntry
from picard_ad.training.distributed import DistributedContext


@dataclass(frozen=True)
class CurvePanel:
    """One panel of ``loss_curve.png``: (train_log.csv column, label) pairs, log y axis or not, and whether the
    held-out validation metric is drawn in it too."""

    title: str
    columns: tuple[tuple[str, str], ...]
    log_scale: bool = False
    with_validation: bool = False


@dataclass(frozen=True)
class SampleGrid:
    """Examples of what the networks do now, one row per example: (H, W) float image in [0, 1] and the titles of
    its equal-width columns (e.g. masked input, completion, ground truth)."""

    image: np.ndarray
    column_titles: tuple[str, ...]


class TrainingStep(ABC):
    """A method's training: networks, optimizers, data and one iteration, driven by ``picard_ad.training.Trainer``.

    The trainer seeds python, numpy and torch with ``config.seed``, then builds the step (``__init__`` creates the
    networks, so their initial weights come from that seed, and the optimizers), moves the networks to the device
    and memory format and broadcasts rank 0's weights, reseeds torch per rank, and calls ``prepare_data``. Then it
    calls ``step`` once per iteration and handles everything else: checkpoints (``networks`` and ``optimizers``
    with their names as file and key names, plus ``state_dict``), logs of the returned losses, validation and the
    best checkpoint, sample grids, resume and divergence.

    Class attributes:
        loss_names: the losses ``step`` returns (columns of ``train_log.csv``), those of partial iterations too.
        validation_name: name of the held-out metric ``validate`` returns (lower is better), e.g. "val_l1".
        curve_panels: how ``loss_curve.png`` groups the losses.

    Args:
        config: the method's training config (a ``RunSettings`` subclass).
        device: where the networks train.
        context: the process group of a data-parallel run (rank 0 of 1 otherwise).
    """

    loss_names: ClassVar[tuple[str, ...]]
    validation_name: ClassVar[str] = "val_loss"
    curve_panels: ClassVar[tuple[CurvePanel, ...]] = ()

    def __init__(self, config: Any, device: torch.device, context: DistributedContext):
        self.config = config
        self.device = device
        self.context = context
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    @abstractmethod
    def prepare_data(self, train_images: Sequence[ImageEntry], val_images: Sequence[ImageEntry], source: Path) -> None:
        """Open the data: training images of this rank's stream, held-out images for ``validate`` (the training
        images themselves when the config holds none out). source: what they were listed from, for errors."""

    @abstractmethod
    def step(self, iteration: int) -> dict[str, torch.Tensor]:
        """Run training iteration ``iteration`` (1-based) and return its losses, detached scalar tensors."""

    @abstractmethod
    def validate(self) -> float:
        """The held-out metric (lower is better), in units the method documents."""

    def sample_grid(self) -> SampleGrid | None:
        """Examples of what the networks do now (written to ``RUN_DIR/samples``); None: none."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """This rank's data state as JSON (sampler positions, private generators); global RNGs are the trainer's."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def describe(self) -> dict[str, Any]:
        """Method-specific facts for the checkpoint's ``config.json`` (architecture, input geometry, ...)."""
        return {}

    @property
    def excluded_images(self) -> list[Path]:
        """Training images the data left out (e.g. no tissue found), reported at the end."""
        return []

    def close(self) -> None:
        """Stop data workers."""

    # -- helpers for steps -------------------------------------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when the config asks for it."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.config.channels_last else torch.contiguous_format

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A batch on the training device, in the networks' memory format."""
        return tensor.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` do not accumulate gradients inside the block (e.g. critics while the generator's
    adversarial loss is backpropagated)."""
    params = [p for module in modules for p in module.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
