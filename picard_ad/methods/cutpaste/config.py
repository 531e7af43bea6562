"""How CutPaste's encoder trains: its training config (defaults: the PICARD paper's, else Li et al. 2021's) and
named presets.

Sources of the defaults: the PICARD paper (Konz et al. 2023, section 5.1) gives 256 px patches, CutPaste 3-Way,
no blank patches, no pastes into blank regions and "6,000 epochs"; we read the latter as 6,000 update steps, the
meaning ``--epochs`` has in the widely used PyTorch reimplementation of CutPaste (Runinho/pytorch-cutpaste), since
6,000 of Li et al.'s epochs of 256 steps would be 1.5 million steps. Li et al. 2021 give the rest: a batch of 32 images
shown three ways (96 samples), SGD with momentum 0.9, learning rate 0.03 decayed along one cosine, weight decay
3e-5, an 8-layer MLP head with a 128-d projection, and the augmentation's sizes.

Li et al.'s SGD recipe fine-tunes an ImageNet-pretrained ResNet-18; here the encoder starts from random weights.
On phantoms at the "small" preset's scale, SGD at learning rate 0.03 (and 0.003) stayed at chance (held-out
cross-entropy ln 3 = 1.10) for 300-600 steps, where Adam at 1e-3 was at 0.92 after 300, so the small presets use
Adam; the paper preset keeps Li et al.'s SGD (6,000 steps of 96 samples may well get past the plateau; watch
``val_loss``, and switch with ``--optimizer adam --lr 0.001`` if it stays at 1.10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picard_ad.config import setting
from picard_ad.errors import ConfigError
from picard_ad.methods.cutpaste.augment import CutPasteAugmentation
from picard_ad.training.config import RunSettings


@dataclass(frozen=True)
class CutPasteTrainConfig(RunSettings):
    """Everything that defines a CutPaste training run. Intensities in [0, 1] as read by ``picard_ad.io``; lengths
    in pixels; ``steps`` counts optimiser steps, each on ``batch_size`` patches shown three ways."""

    steps: int = setting(6000, "optimiser steps (the PICARD paper's 6,000 'epochs')", ge=1, run_control=True)
    batch_size: int = setting(32, "normal patches per step and process; each is seen normal, cut-paste and scar",
                              ge=1)  # fmt: skip
    # networks
    width: int = setting(64, "channels of the encoder's first stage (64: ResNet-18; embeddings are 8x this)", ge=1)
    head_layers: int = setting(8, "hidden layers of the MLP projection head (Li et al.: 8)", ge=0)
    projection_dim: int = setting(128, "size of the head's projection that the 3-way classifier reads", ge=1)
    # patch sampling
    patch_size: int = setting(256, "training patch side, px (the windows' side when scoring)", ge=8)
    tissue_threshold: float = setting(0.005, "intensity at or above which a pixel counts as tissue (for patches, "
                                      "cuts and pastes)", ge=0.0, le=1.0)  # fmt: skip
    min_tissue_fraction: float = setting(0.5, "fraction of a patch that must be tissue (no blank patches)",
                                         ge=0.0, le=1.0)  # fmt: skip
    flips: bool = setting(False, "random horizontal and vertical flips of the patches")
    image_pool_size: int = setting(16, "decoded images open at once; each patch comes from one of them", ge=1)
    patches_per_visit: int = setting(4, "patches cut from a decoded image before it is replaced", ge=1)
    val_patches: int = setting(64, "held-out patches (x3 views) whose 3-way cross-entropy is the validation metric",
                               ge=1)  # fmt: skip
    # augmentation (Li et al. 2021)
    area_ratio: tuple[float, float] = setting((0.02, 0.15), "cut-paste rectangle area, fraction of the patch",
                                              gt=0.0, lt=1.0)  # fmt: skip
    aspect_ratio: float = setting(0.3, "cut-paste width/height drawn log-uniformly in [this, 1/this]", gt=0.0, le=1.0)
    scar_width: tuple[float, float] = setting((2.0, 16.0), "scar width, px of a 256 px patch (scales with it)", gt=0.0)
    scar_length: tuple[float, float] = setting((10.0, 25.0), "scar length, px of a 256 px patch (scales with it)",
                                               gt=0.0)  # fmt: skip
    scar_angle: float = setting(45.0, "scars turn by up to this many degrees either way", ge=0.0, le=180.0)
    jitter: float = setting(0.1, "brightness and contrast jitter of pasted pixels (factors in 1 +- this)",
                            ge=0.0, lt=1.0)  # fmt: skip
    # optimisation (Li et al. 2021)
    optimizer: Literal["sgd", "adam"] = setting("sgd", "SGD with momentum (Li et al.) or Adam (more robust from "
                                                "scratch at small scale)")  # fmt: skip
    lr: float = setting(0.03, "learning rate at the start of its cosine decay to 0", gt=0.0)
    momentum: float = setting(0.9, "SGD momentum (not used by Adam)", ge=0.0, lt=1.0)
    weight_decay: float = setting(3e-5, "weight decay (L2 penalty)", ge=0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("area_ratio", "scar_width", "scar_length"):
            low, high = getattr(self, name)
            if low > high:
                raise ConfigError(f"{name} must be a (min, max) pair with min <= max, got {getattr(self, name)}")

    def augmentation(self) -> CutPasteAugmentation:
        """The cut-paste and scar shapes this config asks for."""
        return CutPasteAugmentation(
            area_ratio=self.area_ratio,
            aspect_ratio=self.aspect_ratio,
            scar_width=self.scar_width,
            scar_length=self.scar_length,
            scar_angle=self.scar_angle,
            jitter=self.jitter,
            tissue_threshold=self.tissue_threshold,
        )


PRESETS: dict[str, CutPasteTrainConfig] = {
    # Konz et al. 2023 / Li et al. 2021: ResNet-18 on 256 px patches, 6,000 steps of 32 patches x 3 views.
    "paper": CutPasteTrainConfig(),
    # Phantom scale on a 2-core CPU in under 2 minutes (idle cores): 64 px windows, a quarter-width ResNet-18 (128-d
    # embeddings), a 2-layer head, Adam (SGD stayed at chance from scratch at this scale), bf16 and channels_last
    # (fast on CPUs with AVX512-BF16/AMX; --no-bf16 elsewhere).
    "small": CutPasteTrainConfig(
        steps=2000,
        batch_size=16,
        width=16,
        head_layers=2,
        projection_dim=64,
        patch_size=64,
        flips=True,
        image_pool_size=8,
        patches_per_visit=8,
        num_workers=1,
        val_images=2,
        val_patches=32,
        validate_every=100,
        checkpoint_every=500,
        log_every=10,
        sample_every=500,
        optimizer="adam",
        lr=1e-3,
        bf16=True,
        channels_last=True,
    ),
    # A seconds-long fit that checks a pipeline end to end (installs, smoke tests); it learns next to nothing.
    "tiny": CutPasteTrainConfig(
        steps=4,
        batch_size=4,
        width=4,
        head_layers=1,
        projection_dim=8,
        patch_size=32,
        image_pool_size=2,
        patches_per_visit=2,
        num_workers=0,
        val_patches=4,
        validate_every=2,
        checkpoint_every=2,
        log_every=2,
        sample_every=4,
        tensorboard=False,
        optimizer="adam",
        lr=1e-3,
    ),
}
