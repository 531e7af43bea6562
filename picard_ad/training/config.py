"""Training configuration of the PICARD completion network: one frozen dataclass, named presets, YAML layering."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from picard_ad.config import from_dict, read_yaml_fields, to_dict
from picard_ad.errors import ConfigError

# Fields that may change when a run is resumed: they steer the run, not what is learnt (bf16 and channels_last
# change rounding only; a resumed run then no longer matches an uninterrupted one bit for bit).
RUN_CONTROL_FIELDS = frozenset(
    {
        "steps",
        "device",
        "bf16",
        "channels_last",
        "num_workers",
        "checkpoint_every",
        "log_every",
        "sample_every",
        "validate_every",
        "tensorboard",
    }
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a completion-network training run; the defaults are the paper's settings.

    Intensities are in [0, 1] as read by ``picard_ad.io``; the networks see ``x * 2 - 1`` in [-1, 1].
    Lengths are in pixels. ``steps`` counts critic iterations (one batch each); the generator steps on every
    ``n_critic``-th iteration, as in the reference trainer.
    """

    # networks
    in_channels: int = 1
    cnum: int = 32
    # geometry: square patches with a square hole box of side hole_size placed anywhere inside;
    # each side of the hole then shrinks by a random 0..hole_max_shrink px per sample
    patch_size: int = 256
    hole_size: int = 128
    hole_max_shrink: int = 16
    # patch sampling
    tissue_threshold: float = 0.005
    min_tissue_fraction: float = 0.0
    flips: bool = False
    image_pool_size: int = 16
    patches_per_visit: int = 4
    num_workers: int = 2
    # held-out validation (the paper's stopping rule: lowest completion L1 on normal patches)
    val_images: int = 0
    val_patches: int = 64
    validate_every: int = 1000
    # optimisation
    batch_size: int = 55
    steps: int = 130_000
    n_critic: int = 5
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    coarse_l1_alpha: float = 1.2
    l1_loss_alpha: float = 1.2
    ae_loss_alpha: float = 1.2
    global_wgan_loss_alpha: float = 1.0
    gan_loss_alpha: float = 0.001
    wgan_gp_lambda: float = 10.0
    spatial_discount_gamma: float = 0.9
    # execution
    bf16: bool = False
    channels_last: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 1337
    checkpoint_every: int = 5000
    log_every: int = 100
    sample_every: int = 1000
    tensorboard: bool = True

    def __post_init__(self) -> None:
        positive = (
            "in_channels", "cnum", "patch_size", "hole_size", "image_pool_size", "patches_per_visit",
            "val_patches", "validate_every", "batch_size", "steps", "n_critic", "checkpoint_every",
            "log_every", "sample_every",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("hole_max_shrink", "val_images", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        # the critics downsample 16-fold: the global one sees the patch, the local one the hole box
        for name in ("patch_size", "hole_size"):
            if getattr(self, name) % 16:
                raise ConfigError(f"{name} must be a multiple of 16 (the critics' input), got {getattr(self, name)}")
        if self.hole_size >= self.patch_size:
            raise ConfigError(f"hole_size ({self.hole_size}) must be smaller than patch_size ({self.patch_size})")
        if 2 * self.hole_max_shrink >= self.hole_size:
            raise ConfigError(
                f"hole_max_shrink ({self.hole_max_shrink}) must be less than half of hole_size ({self.hole_size})"
            )
        if not 0.0 <= self.min_tissue_fraction <= 1.0:
            raise ConfigError(f"min_tissue_fraction must be in [0, 1], got {self.min_tissue_fraction}")
        if not 0.0 < self.spatial_discount_gamma <= 1.0:
            raise ConfigError(f"spatial_discount_gamma must be in (0, 1], got {self.spatial_discount_gamma}")
        if self.seed < 0:
            raise ConfigError(f"seed must not be negative, got {self.seed}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must be in [0, 1), got {self.betas}")


PRESETS: dict[str, TrainConfig] = {
    # Konz et al. 2023 / reference default.yaml: 256 px patches, 128 px holes, batch 55.
    "paper": TrainConfig(),
    # CPU demo: a quarter of the geometry and half the width (64 px patches, 32 px box, 0..4 px shrink), bf16 and
    # channels_last (fast on CPUs with AVX512-BF16/AMX; pass --no-bf16 elsewhere), and, to get visible completions
    # within about 10 minutes on two cores, one critic step per generator step at a higher learning rate.
    "small": TrainConfig(
        cnum=16,
        patch_size=64,
        hole_size=32,
        hole_max_shrink=4,
        min_tissue_fraction=0.5,
        flips=True,
        image_pool_size=8,
        patches_per_visit=8,
        num_workers=1,
        val_images=2,
        val_patches=32,
        validate_every=100,
        batch_size=16,
        steps=2000,
        n_critic=1,
        lr=5e-4,
        bf16=True,
        channels_last=True,
        checkpoint_every=250,
        log_every=10,
        sample_every=250,
    ),
}


def preset_config(name: str) -> TrainConfig:
    """The named preset; an unknown name raises ConfigError listing the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown training preset '{name}'; valid presets: {', '.join(PRESETS)}") from None


def resolve_config(
    base: TrainConfig,
    yaml_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """``base`` (a preset or a stored run's config), then the YAML file's fields, then flags (None = not given)."""
    data = to_dict(base)
    where = "config"
    if yaml_path is not None:
        fields = read_yaml_fields(yaml_path)
        from_dict(TrainConfig, {**data, **fields}, where=str(yaml_path))  # reports bad keys against the file
        data.update(fields)
        where = str(yaml_path)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(TrainConfig, data, where=where)


def config_differences(stored: TrainConfig, new: TrainConfig, ignore: frozenset[str] = RUN_CONTROL_FIELDS) -> list[str]:
    """Names of fields outside ``ignore`` whose values differ, as ``"name: old -> new"`` lines."""
    lines = []
    for field in dataclasses.fields(TrainConfig):
        if field.name in ignore:
            continue
        old, value = getattr(stored, field.name), getattr(new, field.name)
        if old != value:
            lines.append(f"{field.name}: {old!r} -> {value!r}")
    return lines
