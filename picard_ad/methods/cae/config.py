"""How the CAE trains: its training config (defaults: Davletshina et al. 2020, appendix "Training Details") and
named presets.

The paper trains at 512 x 512 with batch 32, Adam at learning rate 1e-4 and 1,000 epochs of its 2,554 normal
hands: 80 steps an epoch, so 80,000 steps. Its "advanced" augmentation (for the CAE) and whether histogram
equalization comes before or after it are part of this config; the preprocessing chain itself is part of the
method's settings (``CAESettings``), which the fit uses as they are when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picard_ad.config import setting
from picard_ad.errors import ConfigError
from picard_ad.training.config import RunSettings


@dataclass(frozen=True)
class CAETrainConfig(RunSettings):
    """Everything that defines a CAE training run. ``steps`` counts optimiser steps of ``batch_size`` images;
    lengths in pixels."""

    steps: int = setting(80_000, "optimiser steps (the paper's 1,000 epochs of 2,554 images in batches of 32)", ge=1,
                         run_control=True)  # fmt: skip
    batch_size: int = setting(32, "images per step and process", ge=1)
    input_size: int = setting(512, "side of the square network input (images resized, aspect kept, and padded)",
                              ge=4)  # fmt: skip
    width: int = setting(16, "channels of the first conv; each stride-2 step doubles them (paper: 16)", ge=1)
    levels: int = setting(5, "stride-2 steps down to the bottleneck (paper: 5, 16 x 16 x 512 at 512 px)", ge=1)
    lr: float = setting(1e-4, "Adam learning rate", gt=0.0)
    augmentation: Literal["advanced", "default", "none"] = setting(
        "advanced",
        "the paper's augmentations: advanced (flips, brightness x U(0.8, 1.2), x/y scale U(0.8, 1.2), "
        "rotation U(-20, 20) degrees, each with probability 0.5), default (flips only) or none",
    )
    equalization_order: Literal["before-augmentation", "after-augmentation"] = setting(
        "before-augmentation",
        "whether the histogram equalization of the settings comes before or after the "
        "augmentation while training (scoring has no augmentation)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.input_size % 2**self.levels:
            raise ConfigError(f"input_size ({self.input_size}) must be a multiple of 2**levels = {2**self.levels}")


PRESETS: dict[str, CAETrainConfig] = {
    # Davletshina et al. 2020: 512 px, widths 16..512, 80,000 steps of 32 images, Adam 1e-4; 64 normal images held
    # out for the best checkpoint (the paper selected by validation ROC-AUC, which needs anomalies).
    "paper": CAETrainConfig(val_images=64, validate_every=800, checkpoint_every=4000, sample_every=4000),
    # A 2-core CPU in about 5 minutes: 128 px, half the paper's widths and one level fewer, which keeps its
    # bottleneck at half the input's pixels (8 x 8 x 128); Adam at a higher rate for the few steps.
    "small": CAETrainConfig(
        steps=1200,
        batch_size=16,
        input_size=128,
        width=8,
        levels=4,
        lr=1e-3,
        val_images=2,
        validate_every=100,
        checkpoint_every=300,
        log_every=20,
        sample_every=300,
        num_workers=0,
    ),
    # A seconds-long fit that checks a pipeline end to end (installs, smoke tests); it learns next to nothing.
    "tiny": CAETrainConfig(
        steps=4,
        batch_size=4,
        input_size=32,
        width=4,
        levels=2,
        lr=1e-3,
        validate_every=2,
        checkpoint_every=2,
        log_every=2,
        sample_every=4,
        num_workers=0,
        tensorboard=False,
    ),
}
